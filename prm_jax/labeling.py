"""Automatic step labels from policy rollouts: Math-Shepherd MC labels, OmegaPRM binary search, PAV targets.

All functions take a `policy` (see `prm_jax.sampling.Policy`: `continue_from(problems, prefixes, rng,
mode=..., ...)`) and `grade(problem, steps) -> bool` (final-answer correctness), and batch every
rollout of a call into one sampler request.

* Math-Shepherd: MC(prefix) = fraction of K rollouts from the prefix that reach the gold answer;
  soft label = MC, hard label = MC > 0. The last step's prefix is the whole solution, so its label is
  the solution's own outcome and costs no rollout.
* OmegaPRM-style binary search for the first error of a wrong solution: if MC(steps[:mid+1]) = 0 the
  error is at or before mid, else after. ~log2(T) rollout batches instead of T - 1.
* PAV (Setlur et al.): Q^pi after each step (= the soft MC label), V^pi from the bare question, and
  the prover's Q^mu / V^mu: `bok:K` (analytic 1 - (1 - Q^pi)^K), `temperature:T` (the policy sampled at
  temperature T), or a separate policy object (`prover_policy`, e.g. another checkpoint).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from prm_jax import jsonio, sampling, targets


@dataclasses.dataclass
class Labelled:
    """One solution with its MC labels; the JSON form is the generic step-wise jsonl line."""

    problem: str
    steps: list[str]
    correct: bool
    answer: str | None
    soft: list[float]
    hard: list[float]
    q: list[float] | None = None
    v0: float | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    exact: list[float] | None = None  # the task's exact step correctness (PRM800K's human labels' analogue)

    def to_json(self) -> dict:
        """Returns the step-wise jsonl object (`prompt`, `completions`, `labels` = soft MC, ...)."""
        return {
            "prompt": self.problem,
            "completions": self.steps,
            "labels": self.soft,
            "hard_labels": self.hard,
            "q": self.q,
            "v0": self.v0,
            "correct": bool(self.correct),
            "answer": self.answer,
            "meta": self.meta,
            **({} if self.exact is None else {"exact_labels": self.exact}),
        }


def rollout_success(
    policy,
    grade: Callable,
    problems: Sequence[str],
    prefixes: Sequence[list[str]],
    k: int,
    rng,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    desc: str | None = None,
) -> np.ndarray:
    """Returns success_NxK (bool): whether each of k rollouts from each (problem, prefix) is correct.

    `rng`: one key (prefix n's key is fold_in(rng, n)) or one key per prefix ([N, 2]); rollout r of
    prefix n draws with fold_in(its key, r) (`sampling.Sampler.sample`).
    """
    n = len(problems)
    if n == 0:
        return np.zeros((0, k), bool)
    keys_n = sampling.request_keys(rng, n)
    flat_p = [p for p in problems for _ in range(k)]
    flat_s = [list(s) for s in prefixes for _ in range(k)]
    flat_keys = sampling.fold_keys(np.repeat(keys_n, k, axis=0), np.tile(np.arange(k), n))
    conts = policy.continue_from(
        flat_p, flat_s, flat_keys, mode="full", temperature=temperature, max_new_tokens=max_new_tokens, desc=desc
    )
    ok = [c.ended and grade(p, s + c.steps) for p, s, c in zip(flat_p, flat_s, conts)]
    return np.asarray(ok, bool).reshape(n, k)


def step_keys(rng, items_N, steps_N) -> np.ndarray:
    """Returns the [N, 2] rollout keys of (item, step) prefixes: fold_in(fold_in(fold_in(rng, 0), item),
    step).

    Full MC and OmegaPRM key a prefix's rollouts this way, so given the same `rng` they draw the same
    rollouts for the same prefix (common random numbers): where their first errors differ, the binary
    search differs, not the MC draw. They draw under fold_in(rng, 0) alone, so a caller's other keys
    (fold_in(rng, 1), ...: V0 and prover rollouts) never meet an (item, step) key.
    """
    return sampling.fold_keys(sampling.fold_keys(jax.random.fold_in(rng, 0), items_N), steps_N)


def mc_values(
    policy,
    grade,
    items: Sequence[tuple[str, list[str], bool]],
    k: int,
    rng,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    desc: str = "MC rollouts",
):
    """Returns (mc per item: list of [T] float arrays, rollouts used) for (problem, steps, correct) items.

    Step t's value is the fraction of k rollouts from steps[:t+1] that are correct (keyed by
    `step_keys(rng, i, t)`); the last step's is the item's own outcome (no rollouts).
    """
    req = [(i, t) for i, (_, steps, _) in enumerate(items) for t in range(len(steps) - 1)]
    succ = rollout_success(
        policy,
        grade,
        [items[i][0] for i, _ in req],
        [items[i][1][: t + 1] for i, t in req],
        k,
        step_keys(rng, [i for i, _ in req], [t for _, t in req]),
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        desc=desc,
    )
    out = [np.zeros(len(steps), np.float32) for _, steps, _ in items]
    for (i, t), s in zip(req, succ):
        out[i][t] = s.mean()
    for i, (_, steps, correct) in enumerate(items):
        if steps:
            out[i][-1] = float(correct)
    return out, len(req) * k


def omega_first_errors(
    policy,
    grade,
    items: Sequence[tuple[str, list[str], bool]],
    k: int,
    rng,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
):
    """Returns (first_error per item (-1 when correct), rollouts used) by binary search on MC = 0.

    Correct solutions need no rollouts. For a wrong one the search runs over steps 0..T-2 (step T-1
    is known wrong from the outcome); all items advance one bisection per batched sampler call. The
    rollouts of item i's step m are keyed by `step_keys(rng, i, m)`, as `mc_values` keys them.
    """
    lo = np.zeros(len(items), np.int64)
    hi = np.asarray([max(len(s) - 1, 0) for _, s, _ in items], np.int64)  # error index in [lo, hi]
    result = np.full(len(items), -1, np.int64)
    active = [i for i, (_, _, correct) in enumerate(items) if not correct]
    used = 0
    with tqdm(desc="OmegaPRM binary search", unit="round", leave=False) as bar:
        while True:
            todo = [i for i in active if lo[i] < hi[i]]
            if not todo:
                break
            mids = [(lo[i] + hi[i]) // 2 for i in todo]
            succ = rollout_success(
                policy,
                grade,
                [items[i][0] for i in todo],
                [items[i][1][: m + 1] for i, m in zip(todo, mids)],
                k,
                step_keys(rng, todo, mids),
                temperature=temperature,
                max_new_tokens=max_new_tokens,
            )
            used += len(todo) * k
            for i, m, s in zip(todo, mids, succ):
                if s.any():
                    lo[i] = m + 1
                else:
                    hi[i] = m
            bar.update(1)
    for i in active:
        result[i] = lo[i]
    return result, used


def prover_q(prover: str, q_pi: np.ndarray, v0_pi: float | None = None):
    """Returns (q_mu, v0_mu) of an analytic prover: 'bok:K' (Best-of-K) or 'same' (the policy itself)."""
    if prover == "same":
        return np.asarray(q_pi, np.float32), v0_pi
    if prover.startswith("bok:"):
        kk = int(prover.split(":")[1])
        q = np.asarray(targets.best_of_k_q(np.asarray(q_pi, np.float32), kk), np.float32)
        v = None if v0_pi is None else float(targets.best_of_k_q(np.float32(v0_pi), kk))
        return q, v
    raise ValueError(f"prover {prover!r} is not analytic: expected 'bok:K' or 'same'")


def label_solutions(
    policy,
    grade: Callable,
    items: Sequence[tuple[str, list[str], bool]],
    rng,
    *,
    k: int = 8,
    temperature: float = 1.0,
    prover: str = "bok:4",
    prover_policy=None,
    v0_k: int | None = None,
    max_new_tokens: int = 256,
    step_truth: Callable | None = None,
    answer_fn: Callable | None = None,
) -> tuple[list[Labelled], dict]:
    """Returns (labelled solutions, stats) with MC labels, prover Q and V0 for each item.

    items: (problem, steps, correct). prover: 'bok:K', 'same', 'temperature:T' (rollouts of `policy`
    at temperature T) or 'policy' (rollouts of `prover_policy`). step_truth(problem, steps) -> exact
    per-step correctness, stored in meta (for AUROC against ground truth). stats counts rollouts.
    """
    # MC rollouts keyed by `step_keys(rng, ...)` (under fold 0), so that OmegaPRM given the same rng draws
    # the same ones; the other rollouts under folds 1-3
    r_v0, r_pr, r_pv = (jax.random.fold_in(rng, i) for i in (1, 2, 3))
    mc, used = mc_values(policy, grade, items, k, rng, temperature=temperature, max_new_tokens=max_new_tokens)
    problems = sorted({p for p, _, _ in items})

    def from_question(pol, rng_, temp, desc):  # [P, K] successes of rollouts from the bare question
        return rollout_success(
            pol,
            grade,
            problems,
            [[] for _ in problems],
            v0_k or k,
            rng_,
            temperature=temp,
            max_new_tokens=max_new_tokens,
            desc=desc,
        )

    v0_succ = from_question(policy, r_v0, temperature, "V0 rollouts")
    v0_pi = dict(zip(problems, v0_succ.mean(1)))
    stats = {"solutions": len(items), "mc_rollouts": used, "v0_rollouts": int(v0_succ.size)}
    if prover.startswith("temperature:") or prover == "policy":
        if prover == "policy" and prover_policy is None:
            raise ValueError("prover 'policy' needs prover_policy (e.g. another checkpoint's Policy)")
        pol = prover_policy if prover == "policy" else policy
        temp = float(prover.split(":")[1]) if prover != "policy" else temperature
        q_mu, pused = mc_values(
            pol, grade, items, k, r_pr, temperature=temp, max_new_tokens=max_new_tokens, desc="prover rollouts"
        )
        vs = from_question(pol, r_pv, temp, "prover V0")
        # The last step's Q is the solution's own outcome under any prover.
        v0_mu = dict(zip(problems, vs.mean(1)))
        stats["prover_rollouts"] = pused + int(vs.size)
    else:
        pairs = [prover_q(prover, m, v0_pi[p]) for (p, _, _), m in zip(items, mc)]
        q_mu = [q for q, _ in pairs]
        v0_mu = {p: prover_q(prover, np.zeros(1), v0_pi[p])[1] for p in problems}
    out = []
    for (p, steps, correct), m, q in zip(items, mc, q_mu):
        meta = {"v0_pi": float(v0_pi[p])}
        truth = None if step_truth is None else [bool(x) for x in step_truth(p, steps)]
        if truth is not None:
            meta["step_correct"] = truth
        out.append(
            Labelled(
                p,
                list(steps),
                bool(correct),
                None if answer_fn is None else answer_fn(p),
                [float(x) for x in m],
                [float(x > 0) for x in m],
                [float(x) for x in q],
                float(v0_mu[p]),
                meta,
                None if truth is None else [float(x) for x in truth],
            )
        )
    return out, stats


def first_error_agreement(
    policy,
    grade,
    items: Sequence[tuple[str, list[str], bool]],
    omega_fe: np.ndarray,
    mc_fe: np.ndarray,
    k: int,
    rng,
    *,
    max_new_tokens: int,
    first_error: Callable,
) -> dict:
    """Returns how often OmegaPRM's first errors (`omega_fe`, on full MC's own rollouts) match full
    MC's (`mc_fe`), how often OmegaPRM on a draw of its own and a second full-MC draw match them, and
    how often each finds the exact first error.

    On the same rollouts (common random numbers, `step_keys`) a mismatch is the binary search's own: a
    prefix after the first zero-MC step that some rollout still finishes right. The two fresh draws
    (`rng`: fold 0 full MC again, fold 1 OmegaPRM, `k` rollouts per prefix) add MC noise: the second
    full-MC draw's agreement is how often full MC agrees with itself.
    First errors are -1 for none; the exact-match rates are over the solutions `first_error` finds wrong.
    """
    if not len(items):
        return {"solutions_with_error_in_omega_subset": 0}
    mc_again, _ = mc_values(
        policy, grade, items, k, jax.random.fold_in(rng, 0), max_new_tokens=max_new_tokens, desc="MC rollouts, again"
    )
    again_fe = np.asarray([_first_zero(m) for m in mc_again])
    own_fe, _ = omega_first_errors(policy, grade, items, k, jax.random.fold_in(rng, 1), max_new_tokens=max_new_tokens)
    exact_fe = np.asarray([first_error(p, st) for p, st, _ in items])
    wrong = exact_fe >= 0
    rate = lambda fe: float(np.mean(fe[wrong] == exact_fe[wrong])) if wrong.any() else None  # noqa: E731
    return {
        # OmegaPRM's binary search against the full MC labels it approximates (same rollouts, same rule)
        "omega_first_error_matches_full_mc": float(np.mean(omega_fe == mc_fe)),
        "omega_own_draw_first_error_matches_full_mc": float(np.mean(own_fe == mc_fe)),
        "full_mc_repeat_first_error_matches_full_mc": float(np.mean(again_fe == mc_fe)),
        "omega_first_error_exact_match": rate(omega_fe),
        "mc_hard_first_error_exact_match": rate(mc_fe),
        "solutions_with_error_in_omega_subset": int(wrong.sum()),
    }


def _first_zero(values) -> int:
    """Returns the index of the first step whose MC value (or hard label) is 0, or -1 if none is."""
    return next((i for i, v in enumerate(values) if v == 0), -1)


def label_and_split(
    policy,
    problems: Sequence[str],
    rng,
    *,
    samples: int,
    k: int,
    prover: str,
    val_frac: float,
    omega_solutions: int,
    solution_tokens: int,
    max_new_tokens: int,
    grade: Callable,
    answer_fn: Callable,
    step_truth: Callable,
    first_error: Callable,
) -> tuple[list[Labelled], list[Labelled], dict]:
    """Returns (train, val, stats): `samples` policy solutions per problem, MC-labelled, split by problem.

    Solutions get `solution_tokens` new tokens at most, rollouts `max_new_tokens`.
    Labels: Math-Shepherd MC values (K rollouts per step prefix), the prover's Q and V0 (`prover`),
    exact step correctness `step_truth(problem, steps)` in meta. OmegaPRM's binary search runs on the
    first `omega_solutions` solutions as a cost comparison, on the rollouts full MC drew for the
    prefixes it probes (its rollouts against full MC's, how often each finds the exact
    `first_error(problem, steps)`, and OmegaPRM's and a second full MC's agreement on fresh draws:
    `first_error_agreement`). The last `val_frac` of the problems
    (and all their solutions) form the validation split, so no problem is on both sides.
    """
    from prm_jax import search

    sols = search.sample_solutions(
        policy, problems, samples, jax.random.fold_in(rng, 0), max_new_tokens=solution_tokens
    )
    items = [
        (p, x.steps, bool(x.complete and grade(p, x.steps))) for p, xs in zip(problems, sols) for x in xs if x.steps
    ]
    t0 = time.perf_counter()
    mc_rng = jax.random.fold_in(rng, 1)
    labelled, stats = label_solutions(
        policy,
        grade,
        items,
        mc_rng,
        k=k,
        prover=prover,
        max_new_tokens=max_new_tokens,
        step_truth=step_truth,
        answer_fn=answer_fn,
    )
    stats["label_seconds"] = time.perf_counter() - t0
    sub = items[:omega_solutions]
    # OmegaPRM keyed as full MC keys its rollouts: it draws the same ones for the prefixes it probes
    fe, used = omega_first_errors(policy, grade, sub, k, mc_rng, max_new_tokens=max_new_tokens)
    stats.update(
        {
            "omega_solutions": len(sub),
            "omega_rollouts": int(used),
            "full_mc_rollouts_same_solutions": int(sum(max(len(st) - 1, 0) for _, st, _ in sub) * k),
            "policy_accuracy_on_label_problems": float(np.mean([c for _, _, c in items])),
            "sampler_tokens_per_s": policy.sampler.tokens_per_second,
            # solutions, MC and V0 rollouts, OmegaPRM: the budget the outcome labels are sized against
            "sampler_tokens": int(policy.sampler.tokens_generated),
            "solutions_sampled": int(sum(len(xs) for xs in sols)),
            "solution_tokens_sampled": int(sum(x.gen_tokens for xs in sols for x in xs)),
        }
    )
    # After `sampler_tokens` is read: the fresh draws are measurements, not part of the budget.
    mc_fe = np.asarray([_first_zero(x.hard) for x in labelled[: len(sub)]])
    stats.update(
        first_error_agreement(
            policy,
            grade,
            sub,
            fe,
            mc_fe,
            k,
            jax.random.fold_in(rng, 2),
            max_new_tokens=max_new_tokens,
            first_error=first_error,
        )
    )
    n_val = max(1, int(round(val_frac * len(problems))))
    val_problems = set(problems[len(problems) - n_val :])
    train = [x for x in labelled if x.problem not in val_problems]
    val = [x for x in labelled if x.problem in val_problems]
    if not train or not val:
        raise ValueError(
            f"labels: {len(train)} training / {len(val)} validation solutions; need both "
            f"({len(problems)} problems, val_frac={val_frac})"
        )
    stats.update({"train_solutions": len(train), "val_solutions": len(val), "val_problems": n_val})
    return train, val, stats


def sample_outcomes(
    policy,
    problems: Sequence[str],
    rng,
    *,
    samples: int,
    solution_tokens: int,
    grade: Callable,
    step_truth: Callable | None = None,
) -> tuple[list[dict], dict]:
    """Returns (records, stats): `samples` policy solutions per problem with their outcome label
    (and, given step_truth(problem, steps) -> bools, the exact step labels `exact_labels`).

    The implicit PRM's data (outcome jsonl: `prompt`, `steps`, `correct`): no rollouts and no MC step
    labels, so one solution costs its own tokens, where an MC-labelled one also costs K rollouts per
    step. An unfinished solution (no EOS within `solution_tokens`) is labelled wrong, as the MC labels
    grade it; a solution without a step is left out (it has nothing to score).
    """
    from prm_jax import search

    before = (policy.sampler.tokens_generated, policy.sampler.seconds)
    t0 = time.perf_counter()
    sols = search.sample_solutions(policy, problems, samples, rng, max_new_tokens=solution_tokens)
    recs = [
        {"prompt": p, "steps": x.steps, "correct": bool(x.complete and grade(p, x.steps))}
        for p, xs in zip(problems, sols)
        for x in xs
        if x.steps
    ]
    if step_truth is not None:
        for r in recs:
            r["exact_labels"] = [float(bool(t)) for t in step_truth(r["prompt"], r["steps"])]
    tokens = policy.sampler.tokens_generated - before[0]
    stats = {
        "outcome_problems": len(problems),
        "outcome_solutions": len(recs),
        "outcome_solutions_without_steps": len(problems) * samples - len(recs),
        "outcome_accuracy": float(np.mean([r["correct"] for r in recs])) if recs else None,
        "outcome_sampler_tokens": int(tokens),
        "outcome_sampler_seconds": policy.sampler.seconds - before[1],
        "outcome_seconds": time.perf_counter() - t0,
    }
    right = [r for r in recs if r["correct"]]
    if step_truth is not None and right:
        # Right by luck: the outcome label credits every step of these, their wrong ones too.
        stats["outcome_right_with_wrong_step"] = float(np.mean([min(r["exact_labels"]) < 1.0 for r in right]))
    return recs, stats


def write_jsonl(path, labelled: Sequence[Labelled]) -> None:
    """Writes one step-wise jsonl object per labelled solution."""
    jsonio.write_jsonl(path, [item.to_json() for item in labelled])


from prm_jax.jsonio import read_jsonl  # noqa: E402,F401  (labels/*.jsonl: the one jsonl reader)
