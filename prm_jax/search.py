"""Reward-guided search: majority vote, best-of-N, step-level beam search and PAV beam search.

A `policy` (see `prm_jax.sampling.Policy`) samples whole solutions or one more step; a `verifier`
(see `prm_jax.verifier.Verifier`) returns, per solution, step rewards (`step_scores`: what min /
prod / mean / pure aggregate) and prefix values (`values`: the verifier's estimate for the solution
so far, read by `last` and by beam ranking). For a score-head PRM both are P(step correct); for an
implicit PRM the reward of step t is r_t and the value is q_t = r_0 + ... + r_t, so `last` is q_T,
the outcome reward it was trained on. Every method returns `SearchResult`s that count generated
and verifier tokens, so that methods are compared at equal compute.

Answer selection is `prm_jax.selection` (argmax, weighted_vote, majority; None answers never win,
ties go to the first candidate), the same rule `evaluate.best_of_n_curve` applies. Weighted vote
sums probabilities: an implicit PRM's signed scores are mapped through a sigmoid (`vote_weights`).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from prm_jax import scoring, selection, verifier_group
from prm_jax.selection import SELECTIONS, select_answer  # noqa: F401  (the search API)


@dataclasses.dataclass
class Solution:
    """One sampled solution: its steps, its parsed final answer (None if none) and its cost.

    step_scores: per-step rewards from a verifier; step_values: its per-prefix values (None: the
    same as step_scores); signed: the scores are unbounded rewards (implicit PRM), not probabilities.
    """

    steps: list[str]
    answer: Any = None
    complete: bool = True
    gen_tokens: int = 0
    min_logprob: float = 0.0  # the policy's least log-prob of a generated token (`Continuation`)
    step_scores: np.ndarray | None = None
    step_values: np.ndarray | None = None
    signed: bool = False


@dataclasses.dataclass
class SearchResult:
    """A method's decision for one problem, with the compute it spent."""

    answer: Any
    gen_tokens: int
    verifier_tokens: int
    solutions: list[Solution] = dataclasses.field(default_factory=list)


def majority_vote(answers: Sequence[Any]) -> Any:
    """Returns the most frequent non-None answer (ties: the one seen first), or None."""
    return select_answer(answers, None, "majority")


def solution_scores(
    step_scores: Sequence[np.ndarray],
    how: str,
    temperature: float = 0.1,
    empty_value: float = -np.inf,
    step_values: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Returns score_N (float64): each solution's step scores aggregated with `how` (scoring.aggregate).

    `last` reads the last entry of `step_values` when given (an implicit PRM's q_T), else of
    `step_scores`; a solution without steps scores `empty_value`.
    """
    if not step_scores:
        return np.zeros((0,), np.float64)
    src = step_values if (how == "last" and step_values is not None) else step_scores
    t = max(1, max(len(s) for s in src))
    x = np.zeros((len(src), t), np.float32)
    m = np.zeros((len(src), t), bool)
    for i, s in enumerate(src):
        x[i, : len(s)] = s
        m[i, : len(s)] = True
    if how == "pure" and np.any((x[m] < 0) | (x[m] > 1)):
        raise ValueError("aggregation 'pure' (PURE's min-form on r = 2p - 1) needs step probabilities in [0, 1]")
    out = np.asarray(scoring.aggregate(x, m, how, temperature=temperature), np.float64)
    return np.where(m.any(1), out, empty_value)


def pool_scores(rewards_PxM, values_PxM, how: str) -> np.ndarray:
    """Returns scores_PxM: `solution_scores` of every problem's M solutions (one call for all; a
    solution without steps scores 0 and has no answer, so it never wins)."""
    P, M = len(rewards_PxM), len(rewards_PxM[0]) if rewards_PxM else 0
    flat_r = [r for rs in rewards_PxM for r in rs]
    flat_q = [q for qs in values_PxM for q in qs]
    return solution_scores(flat_r, how, empty_value=0.0, step_values=flat_q).reshape(P, M)


def vote_weights(scores, signed: bool) -> np.ndarray:
    """Returns weighted-vote weights in [0, 1]: sigmoid(score) for signed (implicit) scores, else the
    scores themselves (probabilities), checked."""
    s = np.asarray(scores, np.float64)
    if signed:
        s = 1.0 / (1.0 + np.exp(-s))
    selection.check_vote_weights(s)
    return s


def best_of_n(solutions: Sequence[Solution], how: str = "min", select: str = "argmax", temperature: float = 0.1) -> Any:
    """Returns the answer chosen among scored solutions (their `step_scores` must be set)."""
    if any(s.step_scores is None for s in solutions):
        raise ValueError("best_of_n needs solutions with step_scores; score them with a verifier first")
    values = [s.step_scores if s.step_values is None else s.step_values for s in solutions]
    scores = solution_scores([s.step_scores for s in solutions], how, temperature, step_values=values)
    if select == "weighted_vote":
        scores = vote_weights(scores, any(s.signed for s in solutions))
    return select_answer([s.answer for s in solutions], scores, select)


def score_solutions(verifier, problems: Sequence[str], solutions: Sequence[Sequence[Solution]]) -> int:
    """Sets `step_scores` on every solution (one batched verifier call); returns verifier tokens used."""
    flat = [(p, s) for p, sols in zip(problems, solutions) for s in sols]
    before = verifier.tokens_scored
    out = verifier.score_all([p for p, _ in flat], [s.steps for _, s in flat])
    for (_, s), r, v in zip(flat, out["rewards"], out["values"]):
        s.step_scores, s.step_values, s.signed = r, v, verifier.kind == "implicit"
    return verifier.tokens_scored - before


def sample_solutions(
    policy,
    problems: Sequence[str],
    n: int,
    rng,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
) -> list[list[Solution]]:
    """Returns n independent full solutions per problem (one batched sampler call)."""
    flat = [p for p in problems for _ in range(n)]
    conts = policy.continue_from(
        flat, [[] for _ in flat], rng, mode="full", temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
    )
    sols = [
        Solution(c.steps, policy.answer(c.steps) if c.ended else None, c.ended, c.num_tokens, c.min_logprob)
        for c in conts
    ]
    return [sols[i * n : (i + 1) * n] for i in range(len(problems))]


def beam_search(
    policy,
    problems: Sequence[str],
    rng,
    *,
    n_beams: int,
    width: int,
    rank_fn: Callable,
    final_fn: Callable,
    max_steps: int = 16,
    temperature: float = 1.0,
    top_p: float = 1.0,
    step_tokens: int = 64,
    finish_tokens: int = 256,
) -> list[SearchResult]:
    """Returns one SearchResult per problem from step-level beam search (search-and-learn's form).

    Round 0 samples `n_beams` first steps from the question; every later round samples `width` next
    steps from each of the K = n_beams // width active beams. A round's children are deduplicated
    (same steps, same ended flag: one copy is kept and scored). Children that ended (EOS, or no new
    step) leave the search for the problem's finished set, unless the same solution is there already;
    the open ones are ranked by `rank_fn(problems, parents, children) -> (scores, vtokens)` and the
    top K of the round's samples become the next active set: a child sampled c times holds up to c
    slots, as beam search over the samples themselves would give it (scoring it once). So the slots
    of finished beams are refilled from the ranked candidates, and a child the verifier ranks low gets
    no slot while better samples remain (with fewer than K open samples, the ranked ones are repeated
    in turn to fill K slots). A
    problem stops once it has `n_beams` finished solutions, no open candidate, or after `max_steps`
    rounds; beams still open then are sampled to the end, one sample each. `final_fn(problems,
    steps_list) -> (scores, vtokens)` picks the answer among the finished solutions (highest score;
    None answers never win). Generated tokens count every sample drawn (each copy of a beam pays
    for its own children); verifier tokens count every distinct child scored.
    """
    if n_beams % width or n_beams < width:
        raise ValueError(f"n_beams ({n_beams}) must be a positive multiple of width ({width})")
    keep = n_beams // width
    live: list[list[list[str]]] = [[[]] for _ in problems]  # per problem: the active step lists
    done: list[list[Solution]] = [[] for _ in problems]
    done_keys: list[set] = [set() for _ in problems]
    gen = np.zeros(len(problems), np.int64)
    ver = np.zeros(len(problems), np.int64)

    def finish(i, steps, ended):
        key = (tuple(steps), ended)
        if key not in done_keys[i]:
            done_keys[i].add(key)
            done[i].append(Solution(list(steps), policy.answer(steps) if ended else None, ended))

    for rnd in range(max_steps):
        req = [
            (i, beam) for i, beams in enumerate(live) for beam in beams for _ in range(n_beams if rnd == 0 else width)
        ]
        if not req:
            break
        conts = policy.continue_from(
            [problems[i] for i, _ in req],
            [b for _, b in req],
            jax.random.fold_in(rng, rnd),
            mode="step",
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=step_tokens,
        )
        open_children: list[tuple[int, list[str], list[str]]] = []  # (problem, parent, child)
        copies: dict = {}  # (problem, child) -> how many of the round's samples it is
        for (i, parent), c in zip(req, conts):
            gen[i] += c.num_tokens
            child = parent + c.steps
            if c.ended or not c.steps:
                finish(i, child, c.ended)
            elif (key := (i, tuple(child))) in copies:
                copies[key] += 1
            else:
                copies[key] = 1
                open_children.append((i, parent, child))
        if open_children:
            scores, vtok = rank_fn(
                [problems[i] for i, _, _ in open_children],
                [p for _, p, _ in open_children],
                [c for _, _, c in open_children],
            )
        by_problem = collections.defaultdict(list)
        for j, (i, _, _) in enumerate(open_children):
            ver[i] += vtok[j]
            by_problem[i].append(j)
        for i in range(len(problems)):
            # Until 2026-12-07 each distinct child held one slot, and with fewer than K distinct ones
            # the slots went round-robin: a child ranked below the best got as many as it. Beams of
            # the demo's policy (few distinct steps) spent half their samples on such children; on
            # validation problems of seed 7 (256, demo config) the BCE / PAV beam rose from 0.703 /
            # 0.707 to 0.754 / 0.754 (benchmarks/NOTES.md, twentieth session).
            order = sorted(by_problem.get(i, []), key=lambda j: (-scores[j], j))
            ranked = [j for j in order for _ in range(copies[i, tuple(open_children[j][2])])][:keep]
            if len(done[i]) >= n_beams or not ranked:
                live[i] = []
                continue
            live[i] = [open_children[ranked[k % len(ranked)]][2] for k in range(keep)]
    # Beams still open after the step budget are finished by the policy, one sample each.
    open_req = [(i, b) for i, beams in enumerate(live) for b in beams]
    if open_req:
        conts = policy.continue_from(
            [problems[i] for i, _ in open_req],
            [b for _, b in open_req],
            jax.random.fold_in(rng, 10_000),
            mode="full",
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=finish_tokens,
        )
        for (i, b), c in zip(open_req, conts):
            gen[i] += c.num_tokens
            finish(i, b + c.steps, c.ended)
    flat = [(i, s) for i in range(len(problems)) for s in done[i]]
    fscores, fvtok = final_fn([problems[i] for i, _ in flat], [s.steps for _, s in flat])
    results = []
    for i in range(len(problems)):
        js = [j for j, (k, _) in enumerate(flat) if k == i]
        for j in js:
            ver[i] += fvtok[j]
        sols = [flat[j][1] for j in js]
        answer = select_answer([s.answer for s in sols], np.asarray([fscores[j] for j in js]), "argmax")
        results.append(SearchResult(answer, int(gen[i]), int(ver[i]), sols))
    return results


def last_step_ranker(verifier) -> Callable:
    """Returns a beam `rank_fn`/`final_fn` scoring a step list by the verifier's value of it: the
    value at its last step (a score-head PRM's probability, an implicit PRM's q_T)."""

    def rank(problems, parents_or_children, children=None):
        steps = parents_or_children if children is None else children
        scores, toks = verifier.values(problems, steps, return_tokens=True)
        return np.asarray([s[-1] if len(s) else -np.inf for s in scores]), toks

    return rank


def pav_ranker(q_verifier, pav_verifier, alpha: float) -> Callable:
    """Returns a beam `rank_fn` ranking children by Q^pi(child) + alpha * A^mu(child) (Setlur et al.).

    Q^pi is `q_verifier`'s value of the child: a verifier of the base policy itself (trained on soft
    MC labels of pi), not of the prover. A^mu = PAV(child's last step) - PAV(parent's last step). For a first step the parent is the bare
    question, whose value V^mu(question) is the same for every sibling and so cannot change their
    order; it is taken as the mean PAV prediction over the problem's first steps. Q^pi and PAV share
    one forward when they share a body (`verifier_group`); a parent ranked in an earlier round as a
    child is not scored again, so verifier tokens count each distinct step list once per verifier.
    """

    seen: dict = {}  # (problem, steps) -> PAV value at its last step, of every child ranked so far

    def rank(problems, parents, children):
        (q, qt), (mu, mt) = verifier_group.values([q_verifier, pav_verifier], problems, children)
        mu_last = np.asarray([s[-1] if len(s) else 0.0 for s in mu])
        for p, c, m in zip(problems, children, mu_last):
            seen[p, tuple(c)] = m
        # A parent is a child of the round before, so its value is known; others are scored.
        parent_idx = [j for j, p in enumerate(parents) if p and (problems[j], tuple(p)) not in seen]
        par, pt = pav_verifier.values(
            [problems[j] for j in parent_idx], [parents[j] for j in parent_idx], return_tokens=True
        )
        prev = np.full(len(children), np.nan)
        for j, p in enumerate(parents):
            if p and (problems[j], tuple(p)) in seen:
                prev[j] = seen[problems[j], tuple(p)]
        for j, s in zip(parent_idx, par):
            prev[j] = s[-1]
        roots = collections.defaultdict(list)
        for j, p in enumerate(parents):
            if not p:
                roots[problems[j]].append(mu_last[j])
        for j, p in enumerate(parents):
            if not p:
                prev[j] = float(np.mean(roots[problems[j]]))
        adv = mu_last - prev
        q_last = np.asarray([s[-1] if len(s) else -np.inf for s in q])
        toks = np.asarray(qt) + np.asarray(mt)
        ptoks = np.zeros(len(children), np.int64)
        for j, t in zip(parent_idx, pt):
            ptoks[j] = t
        score = np.asarray(scoring.pav_search_score(q_last[None], adv[None], alpha))[0]
        return score, toks + ptoks

    return rank


# Aggregations per verifier kind: probabilities (score heads) take PURE's min-form too; an implicit
# PRM's signed step rewards r_t take min / mean, and `last` reads its q_T.
AGGS = {"score": ("min", "last", "prod", "mean", "pure"), "implicit": ("min", "last", "mean")}
AGGS["lm_pair"] = AGGS["score"]  # probabilities too (a generative PRM's P(good token))
AGGS["mlp_head"] = AGGS["score"]  # and a two-class head's P(step correct)
VOTE_AGGS = ("min", "last", "prod", "mean")  # aggregations whose score is a probability (or is mapped to one)


def _same(answer, gold) -> bool:
    return answer is not None and answer == gold


def pick_profile(sols, correct_PxM, scores_PxM, exact_ok: dict, pool: bool = False) -> dict:
    """Returns what argmax best-of-N picks from each problem's whole pool (or, `pool`, the pool's own
    means): accuracy, share whose every step is exactly right, share right by luck (right answer,
    some step wrong), share confidently wrong (wrong answer, every token drawn at probability >= 0.5),
    mean steps and generated tokens, and the median probability the policy gave the least likely
    token it drew. A verifier whose picks are longer, shorter, luckier or less likely than the pool's
    is exploited by that feature (what makes argmax fall as N grows); confidently wrong picks are the
    errors a verifier reading the policy's likelihood cannot see."""
    chosen = []
    for i, xs in enumerate(sols):
        if pool:
            chosen += [(x, bool(correct_PxM[i][j])) for j, x in enumerate(xs)]
        else:
            j = selection.select_index([x.answer for x in xs], np.asarray(scores_PxM[i], np.float64), "argmax")
            if j >= 0:
                chosen.append((xs[j], bool(correct_PxM[i][j])))
    if not chosen:
        return {}
    exact = np.asarray([exact_ok.get(id(x), False) for x, _ in chosen])
    right = np.asarray([c for _, c in chosen])
    least_p = np.exp([x.min_logprob for x, _ in chosen])
    return {
        "accuracy": float(right.mean()),
        "all_steps_right": float(exact.mean()),
        "right_by_luck": float((right & ~exact).mean()),
        "confidently_wrong": float((~right & (least_p >= 0.5)).mean()),
        "mean_steps": float(np.mean([len(x.steps) for x, _ in chosen])),
        "mean_gen_tokens": float(np.mean([x.gen_tokens for x, _ in chosen])),
        "least_likely_token_p": float(np.median(least_p)),
    }


def evaluate_methods(
    policy,
    verifiers: dict,
    problems: Sequence[str],
    gold: Sequence[Any],
    rng,
    *,
    n: int,
    beams: dict | None = None,
    beam_width: int = 4,
    alpha: float = 0.5,
    max_new_tokens: int = 128,
    beam_max_steps: int = 6,
    step_tokens: int = 48,
    n_boot: int = 200,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    grade: Callable = _same,
    step_truth: Callable | None = None,
    per_problem: bool = False,
) -> dict:
    """Returns the comparison of search methods on `problems`: accuracy-vs-N curves with bootstrap CIs,
    step AUROC, token counts and timings (a JSON-able dict).

    On the same n samples per problem: majority vote, and per verifier ({name: Verifier}) best-of-N
    for each aggregation of AGGS[kind] by argmax and (for VOTE_AGGS) weighted vote, each curve from
    `evaluate.best_of_n_curve` at N = 1, 2, 4, ..., n. Then each beam search of `beams`,
    {label: {"rank": name, "advantage": name or None, "answer": name}}: beams ranked by the `rank`
    verifier's last step score, or by Q(rank) + alpha * A(advantage) (PAV beam search), the final
    answer by the `answer` verifier; its CI through the same bootstrap. Sampling at `temperature`,
    `top_p`. `grade(answer, gold)` decides correctness; `step_truth(problem, steps)` (exact per-step
    correctness) adds step AUROC and one solution with an error and its step scores (`example`).
    `per_problem_acc` holds each curve's per-problem expected correctness at each N (with the bootstrap's
    `n_boot` and `seed` in `bootstrap`), for `evaluate.paired_difference`.
    `per_problem` adds `per_problem`: per problem its gold answer, every sample's answer, correctness,
    tokens and scores, and each curve's pick from all n samples (what the curve's value at N = n
    averages) or each beam search's answer.
    """
    import time

    from prm_jax import evaluate

    t0 = time.perf_counter()
    sols = sample_solutions(
        policy,
        problems,
        n,
        jax.random.fold_in(rng, 0),
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    sample_s = time.perf_counter() - t0
    flat = [(i, x) for i, xs in enumerate(sols) for x in xs]
    correct = np.asarray([[grade(x.answer, gold[i]) for x in xs] for i, xs in enumerate(sols)])
    answers = [[x.answer for x in xs] for xs in sols]
    gen_tokens = np.asarray([[x.gen_tokens for x in xs] for xs in sols])
    ok = [(i, x) for i, x in flat if x.steps]
    res = {
        "n": n,
        "problems": len(problems),
        "sample_seconds": sample_s,
        "mean_gen_tokens_per_solution": float(gen_tokens.mean()),
        "policy_accuracy": float(correct.mean()),
        "curves": {},
        # Each curve's per-problem expected correctness [N index][problem]: paired method comparisons.
        "per_problem_acc": {},
        "bootstrap": {"n_boot": n_boot, "seed": seed},
        "auroc": {},
        "tokens": {},
    }
    truth = [step_truth(problems[i], x.steps) for i, x in ok] if step_truth else None
    scores: dict = {}
    # Probes of one frozen body share its forward (bit-equal to scoring each alone).
    verifier_group.share_bodies(list(verifiers.values()))
    before = {name: v.tokens_scored for name, v in verifiers.items()}
    outs = verifier_group.score_all(list(verifiers.values()), [problems[i] for i, _ in ok], [x.steps for _, x in ok])
    for (name, v), out in zip(verifiers.items(), outs):
        res["tokens"][f"verifier_{name}_per_problem"] = (v.tokens_scored - before[name]) / len(problems)
        if truth is not None:
            a, lo, hi = evaluate.step_auroc_ci(out["values"], truth, n_boot=n_boot, seed=seed)
            res["auroc"][name] = a
            res.setdefault("auroc_ci", {})[name] = [lo, hi]
        rew = {id(x): r for (_, x), r in zip(ok, out["rewards"])}
        val = {id(x): q for (_, x), q in zip(ok, out["values"])}
        scores[name] = (
            [[rew.get(id(x), np.zeros(0)) for x in xs] for xs in sols],
            [[val.get(id(x), np.zeros(0)) for x in xs] for xs in sols],
        )
    ns = [2**i for i in range(int(np.log2(n)) + 1)]
    rows = None
    if per_problem:
        rows = [
            {
                "index": i,
                "problem": problems[i],
                "gold": gold[i],
                "samples": [
                    {"answer": x.answer, "correct": bool(c), "gen_tokens": int(x.gen_tokens), "scores": {}}
                    for x, c in zip(xs, correct[i])
                ],
                "picks": {},
            }
            for i, xs in enumerate(sols)
        ]
    ids_PxM = selection.answer_ids(answers)

    def curve(label, sc, method, correct_PxM=correct, answers_PxM=answers, at=ns):
        c = evaluate.best_of_n_curve(sc, correct_PxM, answers_PxM, ns=at, method=method, n_boot=n_boot, seed=seed)
        res["curves"][label] = {"ns": list(at), "acc": c.acc.tolist(), "lo": c.lo.tolist(), "hi": c.hi.tolist()}
        # Means of n_boot 0/1 draws (multiples of 1/n_boot): 6 decimals are far below that step, and
        # eval.json stays small.
        res["per_problem_acc"][label] = np.round(c.per_problem, 6).tolist()
        if rows is not None and answers_PxM is not None:  # the rule on the whole pool: the curve at N = n
            full = np.broadcast_to(np.arange(n), (1, len(problems), n))
            pick = selection.choose(method, full, ids_PxM, sc)[0]
            for r, j in zip(rows, pick):
                ok = bool(j >= 0 and correct_PxM[r["index"], j])
                r["picks"][label] = {
                    "sample": int(j),
                    "answer": r["samples"][j]["answer"] if j >= 0 else None,
                    "correct": ok,
                }

    curve("majority", None, "majority")
    # The ceiling: an oracle verifier (scores = correctness) picks a right answer whenever one is drawn.
    curve("oracle", correct.astype(np.float64), "argmax")
    pooled = {}  # (verifier, aggregation) -> scores_PxM
    for name, v in verifiers.items():
        rews, vals = scores[name]
        for agg in AGGS[v.kind]:
            # A solution without steps has no answer, so it never wins whatever it scores.
            sc = pooled[name, agg] = pool_scores(rews, vals, agg)
            for r in rows or ():
                for smp, v_ in zip(r["samples"], sc[r["index"]]):
                    smp["scores"][f"{name}/{agg}"] = float(v_)
            curve(f"{name}/{agg}/argmax", sc, "argmax")
            if agg in VOTE_AGGS:  # weighted vote sums probabilities: an implicit PRM's through a sigmoid
                curve(f"{name}/{agg}/weighted_vote", vote_weights(sc, v.kind == "implicit"), "weighted_vote")
    res["tokens"]["best_of_n_gen_per_problem_at_N"] = {str(k): float(gen_tokens.mean() * k) for k in ns}
    if truth is not None:
        exact_ok = {id(x): bool(all(t)) for (_, x), t in zip(ok, truth)}
        res["picks"] = {
            "pool": pick_profile(sols, correct, [[0] * len(xs) for xs in sols], exact_ok, pool=True),
            **{
                f"{name}/{agg}": pick_profile(sols, correct, pooled[name, agg], exact_ok)
                for name in verifiers
                for agg in ("min", "last")
                if (name, agg) in pooled
            },
        }
    res["beam_terms"] = {}
    for label, spec in (beams or {}).items():
        q = verifiers[spec["rank"]]
        rank = pav_ranker(q, verifiers[spec["advantage"]], alpha) if spec.get("advantage") else last_step_ranker(q)
        res["beam_terms"][label] = {
            "rank": f"{spec['rank']} + {alpha} * A({spec['advantage']})" if spec.get("advantage") else spec["rank"],
            "answer": spec["answer"],
        }
        t0 = time.perf_counter()
        out = beam_search(
            policy,
            problems,
            jax.random.fold_in(rng, 7),
            n_beams=n,
            width=beam_width,
            rank_fn=rank,
            final_fn=last_step_ranker(verifiers[spec["answer"]]),
            max_steps=beam_max_steps,
            step_tokens=step_tokens,
            finish_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
        )
        hit = np.asarray([[grade(r.answer, g)] for r, g in zip(out, gold)])
        for r, o, h in zip(rows or (), out, hit[:, 0]):
            r["picks"][label] = {"answer": o.answer, "correct": bool(h), "gen_tokens": int(o.gen_tokens)}
        curve(label, np.zeros(hit.shape), "argmax", hit, None, [1])
        res["curves"][label]["ns"] = [n]  # one search with n beams
        res["tokens"][f"{label}_gen_per_problem"] = float(np.mean([r.gen_tokens for r in out]))
        res["tokens"][f"{label}_verifier_per_problem"] = float(np.mean([r.verifier_tokens for r in out]))
        res[f"{label}_seconds"] = time.perf_counter() - t0
    res["sampler_tokens_per_s"] = policy.sampler.tokens_per_second
    if rows is not None:
        res["per_problem"] = rows
    if truth is not None and ok:
        # One solution with an error (else the first) and every verifier's step scores on it.
        j = next((j for j, t in enumerate(truth) if not all(t)), 0)
        i, x = ok[j]
        res["example"] = {
            "problem": problems[i],
            "steps": x.steps,
            "truth": [bool(t) for t in truth[j]],
            "scores": {
                name: [float(s) for s in v.step_scores([problems[i]], [x.steps])[0]] for name, v in verifiers.items()
            },
        }
    return res
