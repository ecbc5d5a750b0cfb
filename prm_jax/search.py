"""Reward-guided search: majority vote, best-of-N, step-level beam search and PAV beam search.

A `policy` (see `prm_jax.sampling.Policy`) samples whole solutions or one more step; a `verifier`
(see `prm_jax.verifier.Verifier`) returns per-step scores for (problem, steps) pairs, batched through
one jitted forward. Every method returns `SearchResult`s that count generated tokens and verifier
tokens, so that methods are compared at equal compute.

Answer selection (best-of-N): `argmax` picks the answer of the best-scored solution; `vote` sums
solution scores per distinct answer (score-weighted majority vote). Solutions without an answer
never win.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from prm_jax import scoring

SELECTIONS = ("argmax", "vote")


@dataclasses.dataclass
class Solution:
    """One sampled solution: its steps, its parsed final answer (None if none) and its cost."""
    steps: list[str]
    answer: Any = None
    complete: bool = True
    gen_tokens: int = 0
    step_scores: np.ndarray | None = None


@dataclasses.dataclass
class SearchResult:
    """A method's decision for one problem, with the compute it spent."""
    answer: Any
    gen_tokens: int
    verifier_tokens: int
    solutions: list[Solution] = dataclasses.field(default_factory=list)


def majority_vote(answers: Sequence[Any]) -> Any:
    """Returns the most frequent non-None answer (ties: the one seen first), or None."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def solution_scores(step_scores: Sequence[np.ndarray], how: str, temperature: float = 0.1,
                    empty_value: float = -np.inf) -> np.ndarray:
    """Returns score_N (float64): each solution's step scores aggregated with `how` (scoring.aggregate)."""
    if not step_scores:
        return np.zeros((0,), np.float64)
    t = max(1, max(len(s) for s in step_scores))
    x = np.zeros((len(step_scores), t), np.float32)
    m = np.zeros((len(step_scores), t), bool)
    for i, s in enumerate(step_scores):
        x[i, : len(s)] = s
        m[i, : len(s)] = True
    out = np.asarray(scoring.aggregate(x, m, how, temperature=temperature), np.float64)
    return np.where(m.any(1), out, empty_value)


def select_answer(answers: Sequence[Any], scores: np.ndarray, select: str = "argmax") -> Any:
    """Returns the chosen answer: of the best-scored solution ('argmax') or the best score sum ('vote')."""
    if select not in SELECTIONS:
        raise ValueError(f"unknown answer selection {select!r}; expected one of {SELECTIONS}")
    idx = [i for i, a in enumerate(answers) if a is not None]
    if not idx:
        return None
    if select == "argmax":
        return answers[max(idx, key=lambda i: (scores[i], -i))]
    totals: dict[Any, float] = collections.defaultdict(float)
    for i in idx:
        totals[answers[i]] += float(scores[i])
    return max(totals, key=lambda a: totals[a])


def best_of_n(solutions: Sequence[Solution], how: str = "min", select: str = "argmax",
              temperature: float = 0.1) -> Any:
    """Returns the answer chosen among scored solutions (their `step_scores` must be set)."""
    if any(s.step_scores is None for s in solutions):
        raise ValueError("best_of_n needs solutions with step_scores; score them with a verifier first")
    scores = solution_scores([s.step_scores for s in solutions], how, temperature)
    return select_answer([s.answer for s in solutions], scores, select)


def score_solutions(verifier, problems: Sequence[str], solutions: Sequence[Sequence[Solution]]) -> int:
    """Sets `step_scores` on every solution (one batched verifier call); returns verifier tokens used."""
    flat = [(p, s) for p, sols in zip(problems, solutions) for s in sols]
    before = verifier.tokens_scored
    scores = verifier.step_scores([p for p, _ in flat], [s.steps for _, s in flat])
    for (_, s), sc in zip(flat, scores):
        s.step_scores = sc
    return verifier.tokens_scored - before


def sample_solutions(policy, problems: Sequence[str], n: int, rng, *, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 256) -> list[list[Solution]]:
    """Returns n independent full solutions per problem (one batched sampler call)."""
    flat = [p for p in problems for _ in range(n)]
    conts = policy.continue_from(flat, [[] for _ in flat], rng, mode="full", temperature=temperature,
                                 top_p=top_p, max_new_tokens=max_new_tokens)
    sols = [Solution(c.steps, policy.answer(c.steps) if c.ended else None, c.ended, c.num_tokens)
            for c in conts]
    return [sols[i * n: (i + 1) * n] for i in range(len(problems))]


def beam_search(policy, problems: Sequence[str], rng, *, n_beams: int, width: int,
                rank_fn: Callable, final_fn: Callable, max_steps: int = 16, temperature: float = 1.0,
                top_p: float = 1.0, step_tokens: int = 64, finish_tokens: int = 256,
                ) -> list[SearchResult]:
    """Returns one SearchResult per problem from step-level beam search.

    Every round, each kept beam gets `width` sampled next steps (the first round samples `n_beams`
    first steps from the question); `rank_fn(problems, parents, children) -> (rank_scores, vtokens)`
    scores the children (lists of step lists) and the top `n_beams // width` survive. A surviving
    child that ended (EOS) is set aside as finished and its slot is not refilled; beams still open
    after `max_steps` rounds are sampled to the end. `final_fn(problems, solutions) -> (scores,
    vtokens)` picks the answer among the finished solutions (highest score).
    """
    if n_beams % width or n_beams < width:
        raise ValueError(f"n_beams ({n_beams}) must be a positive multiple of width ({width})")
    keep = n_beams // width
    live = [[[]] for _ in problems]  # per problem: list of open step lists
    done: list[list[Solution]] = [[] for _ in problems]
    gen = np.zeros(len(problems), np.int64)
    ver = np.zeros(len(problems), np.int64)
    for rnd in range(max_steps):
        req = [(i, beam) for i, beams in enumerate(live) for beam in beams
               for _ in range(n_beams if rnd == 0 else width)]
        if not req:
            break
        conts = policy.continue_from([problems[i] for i, _ in req], [b for _, b in req],
                                     jax.random.fold_in(rng, rnd), mode="step",
                                     temperature=temperature, top_p=top_p,
                                     max_new_tokens=step_tokens)
        children = [b + c.steps for (_, b), c in zip(req, conts)]
        for (i, _), c in zip(req, conts):
            gen[i] += c.num_tokens
        scores, vtok = rank_fn([problems[i] for i, _ in req], [b for _, b in req], children)
        for j, (i, _) in enumerate(req):
            ver[i] += vtok[j]
        by_problem = collections.defaultdict(list)
        for j, (i, _) in enumerate(req):
            by_problem[i].append(j)
        for i in range(len(problems)):
            js = sorted(by_problem.get(i, []), key=lambda j: -scores[j])[:keep]
            live[i] = []
            budget = keep - len(done[i])
            for j in js[:max(budget, 0)]:
                c = conts[j]
                if c.ended or not c.steps:
                    done[i].append(Solution(children[j], policy.answer(children[j]) if c.ended else None,
                                            c.ended))
                else:
                    live[i].append(children[j])
    # Beams still open after the step budget are finished by the policy, one sample each.
    open_req = [(i, b) for i, beams in enumerate(live) for b in beams]
    if open_req:
        conts = policy.continue_from([problems[i] for i, _ in open_req], [b for _, b in open_req],
                                     jax.random.fold_in(rng, 10_000), mode="full",
                                     temperature=temperature, top_p=top_p,
                                     max_new_tokens=finish_tokens)
        for (i, b), c in zip(open_req, conts):
            gen[i] += c.num_tokens
            steps = b + c.steps
            done[i].append(Solution(steps, policy.answer(steps) if c.ended else None, c.ended))
    flat = [(i, s) for i in range(len(problems)) for s in done[i]]
    fscores, fvtok = final_fn([problems[i] for i, _ in flat], [s.steps for _, s in flat])
    results = []
    for i in range(len(problems)):
        js = [j for j, (k, _) in enumerate(flat) if k == i]
        for j in js:
            ver[i] += fvtok[j]
        sols = [flat[j][1] for j in js]
        answers = [s.answer for s in sols]
        answer = select_answer(answers, np.asarray([fscores[j] for j in js]), "argmax")
        results.append(SearchResult(answer, int(gen[i]), int(ver[i]), sols))
    return results


def last_step_ranker(verifier) -> Callable:
    """Returns a beam `rank_fn`/`final_fn` scoring a step list by the verifier's score at its last step."""
    def rank(problems, parents_or_children, children=None):
        steps = parents_or_children if children is None else children
        scores, toks = verifier.step_scores(problems, steps, return_tokens=True)
        return np.asarray([s[-1] if len(s) else -np.inf for s in scores]), toks
    return rank


def pav_ranker(q_verifier, pav_verifier, alpha: float) -> Callable:
    """Returns a beam `rank_fn` ranking children by Q^pi(child) + alpha * A^mu(child).

    A^mu = PAV(child's last step) - PAV(parent's last step). For a first step the parent is the bare
    question, whose value V^mu(question) is the same for every sibling and so cannot change their
    order; it is taken as the mean PAV prediction over the problem's first steps.
    """
    def rank(problems, parents, children):
        q, qt = q_verifier.step_scores(problems, children, return_tokens=True)
        mu, mt = pav_verifier.step_scores(problems, children, return_tokens=True)
        mu_last = np.asarray([s[-1] if len(s) else 0.0 for s in mu])
        parent_idx = [j for j, p in enumerate(parents) if p]
        par, pt = pav_verifier.step_scores([problems[j] for j in parent_idx],
                                           [parents[j] for j in parent_idx], return_tokens=True)
        prev = np.full(len(children), np.nan)
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
