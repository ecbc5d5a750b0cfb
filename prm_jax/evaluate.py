"""Evaluation on the host (numpy): ProcessBench F1, threshold choice, best-of-N curves with bootstrap
confidence intervals, step AUROC, and answer extraction / grading.

Nothing here imports jax, tfds or grain; `math_verify` is imported only when MATH / GSM8K answers are
graded.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import NamedTuple, Sequence

import numpy as np

from prm_jax import selection
from prm_jax.data.readers import last_boxed

BEST_OF_N_METHODS = selection.SELECTIONS
log = logging.getLogger(__name__)

ANSWER_KINDS = ("math", "gsm8k", "arith")


# ---------------------------------------------------------------------------------------- ProcessBench


def _f1(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def processbench_metrics(pred_first_error, label) -> dict:
    """Returns {acc_erroneous, acc_correct, f1, n, n_erroneous, n_correct} (accuracies in [0, 1]).

    pred_first_error [N] and label [N] hold the index of the earliest wrong step or -1 for none.
    acc_erroneous: exact index match on cases with label != -1; acc_correct: pred == -1 on cases with
    label == -1; f1: their harmonic mean (ProcessBench). An accuracy with no cases is NaN, F1 then 0.
    """
    pred = np.asarray(pred_first_error, np.int64).ravel()
    lab = np.asarray(label, np.int64).ravel()
    if pred.shape != lab.shape:
        raise ValueError(f"pred_first_error has {pred.size} entries, label has {lab.size}")
    if np.any(lab < -1) or np.any(pred < -1):
        raise ValueError("first-error indices must be >= -1")
    err, ok = lab != -1, lab == -1
    acc_err = float(np.mean(pred[err] == lab[err])) if err.any() else float("nan")
    acc_ok = float(np.mean(pred[ok] == -1)) if ok.any() else float("nan")
    f1 = _f1(acc_err, acc_ok) if err.any() and ok.any() else 0.0
    return {
        "acc_erroneous": acc_err,
        "acc_correct": acc_ok,
        "f1": f1,
        "n": int(lab.size),
        "n_erroneous": int(err.sum()),
        "n_correct": int(ok.sum()),
    }


def processbench_summary(per_split: dict) -> dict:
    """Returns {split: metrics, ..., 'average': means of f1 / acc_erroneous / acc_correct over splits}.

    The average F1 is the paper's headline number; the accuracies average over the splits that have
    such cases (NaN entries skipped).

    per_split maps a split name to (pred_first_error [N], label [N]).
    """
    out = {name: processbench_metrics(p, l) for name, (p, l) in per_split.items()}
    if out:

        def mean(k):  # an accuracy undefined on every split stays NaN (written as null), without a warning
            vals = [m[k] for m in out.values() if not np.isnan(m[k])]
            return float(np.mean(vals)) if vals else float("nan")

        out["average"] = {k: mean(k) for k in ("acc_erroneous", "acc_correct", "f1")}
        out["average"]["n"] = int(sum(m["n"] for name, m in out.items() if name != "average"))
    return out


def _check_probs(step_probs_list: Sequence) -> None:
    bad = [i for i, p in enumerate(step_probs_list) if not np.all(np.isfinite(np.asarray(p, np.float64)))]
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(step_probs_list)} solutions have NaN or infinite step "
            f"probabilities (first: solution {bad[0]}); a NaN is never a prediction"
        )


def processbench_subset(records: Sequence, limit: int, seed: int = 0) -> list:
    """Returns `limit` records drawn without replacement, stratified by erroneous / all-correct case
    (each class keeps its share of the file, at least one case of each when both exist), seeded, in
    file order. ProcessBench files list their erroneous cases first, so a head would have no
    correct case and F1 = 0."""
    if limit <= 0:
        raise ValueError(f"--limit must be positive, got {limit}")
    if limit >= len(records):
        return list(records)
    err = [i for i, r in enumerate(records) if r.first_error() not in (-1, None)]
    ok = [i for i, r in enumerate(records) if i not in set(err)]
    n_err = int(round(limit * len(err) / len(records)))
    if err and ok:
        n_err = min(max(n_err, 1), limit - 1)
    n_err = min(n_err, len(err))
    rng = np.random.default_rng(seed)
    pick = list(rng.choice(err, n_err, replace=False)) + list(rng.choice(ok, limit - n_err, replace=False))
    return [records[i] for i in sorted(int(i) for i in pick)]


def predict_first_error(step_probs_list: Sequence, threshold: float) -> np.ndarray:
    """Returns int64 [N]: per solution, the first step with probability < threshold, or -1.

    NaN or infinite probabilities (and a NaN threshold) are an error, never a prediction.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    _check_probs(step_probs_list)
    out = np.full(len(step_probs_list), -1, np.int64)
    for i, p in enumerate(step_probs_list):
        below = np.nonzero(np.asarray(p, np.float64) < threshold)[0]
        if below.size:
            out[i] = below[0]
    return out


def best_threshold(step_probs_list: Sequence, labels) -> float:
    """Returns the threshold that maximises ProcessBench F1 on these solutions (exact search).

    step_probs_list: per solution, its step probabilities (ragged); labels: first-error index or -1.
    The prediction at threshold x is the first step with p < x. With m_t the running minimum of a
    solution's probabilities, it is right exactly for x in (m_k, m_{k-1}] (label k, m_{-1} = +inf),
    or x <= m_last (label -1); F1 is constant between consecutive distinct m values, so each such
    piece is scored once, at its midpoint. Among pieces with the best F1 the one closest to 0.5 wins.
    """
    labels = np.asarray(labels, np.int64).ravel()
    if len(step_probs_list) != labels.size:
        raise ValueError(f"{len(step_probs_list)} solutions but {labels.size} labels")
    _check_probs(step_probs_list)
    lo_err, hi_err, hi_ok, values = [], [], [], []
    for i, (p, k) in enumerate(zip(step_probs_list, labels)):
        m = np.minimum.accumulate(np.asarray(p, np.float64).ravel())
        if m.size == 0:
            raise ValueError(f"solution {i} has no steps")
        if not -1 <= k < m.size:
            raise ValueError(f"label {k} of solution {i} is outside [-1, {m.size - 1}]")
        values.append(m)
        if k == -1:
            hi_ok.append(m[-1])
        else:
            lo_err.append(m[k])
            hi_err.append(np.inf if k == 0 else m[k - 1])
    u = np.unique(np.concatenate(values))
    edges = np.concatenate([[u[0] - 1.0], u, [u[-1] + 1.0]])
    xs = (edges[:-1] + edges[1:]) / 2
    lo_err, hi_err, hi_ok = (np.asarray(a, np.float64) for a in (lo_err, hi_err, hi_ok))
    right_err = ((lo_err[None, :] < xs[:, None]) & (xs[:, None] <= hi_err[None, :])).sum(1)
    right_ok = (xs[:, None] <= hi_ok[None, :]).sum(1)
    acc_err = right_err / max(lo_err.size, 1)
    acc_ok = right_ok / max(hi_ok.size, 1)
    f1 = np.where(acc_err + acc_ok > 0, 2 * acc_err * acc_ok / np.maximum(acc_err + acc_ok, 1e-300), 0.0)
    best = np.flatnonzero(f1 == f1.max())
    return float(xs[best[np.argmin(np.abs(xs[best] - 0.5))]])


def pick_threshold(step_probs_list: Sequence, labels) -> float:
    """Returns `best_threshold` for solutions whose trailing steps may be unscored (cut by a length
    limit): a label beyond the scored steps is reached by padding them as confident 'correct' (1.0),
    since a step that was never scored can never be predicted wrong."""
    labels = np.asarray(labels, np.int64).ravel()
    padded = [
        np.pad(np.asarray(p, np.float64), (0, max(0, max(int(k) + 1, 1) - len(p))), constant_values=1.0)
        for p, k in zip(step_probs_list, labels)
    ]
    return best_threshold(padded, labels)


# ------------------------------------------------------------------------------------- best-of-N


class Curve(NamedTuple):
    """Accuracy against N: point estimate and a bootstrap confidence interval, per N.

    per_problem [len(ns), P]: each problem's expected correctness at each N (acc is its mean over
    problems), what `paired_difference` compares two methods on.
    """

    ns: np.ndarray
    acc: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    per_problem: np.ndarray | None = None


def best_of_n_curve(
    scores_PxM,
    correct_PxM,
    answers_PxM=None,
    ns=None,
    method: str = "argmax",
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
) -> Curve:
    """Returns Curve(ns, acc, lo, hi): best-of-N accuracy with bootstrap confidence intervals.

    From a pool of M candidates per problem, each replicate draws a subset of N (without replacement)
    per problem and selects one answer with `selection.choose`, the rule `search.select_answer`
    applies: `argmax` (highest score), `weighted_vote` (highest sum of scores per distinct answer;
    scores must be probabilities) or `majority` (most frequent answer; scores unused). Candidates
    whose answer is None never win; ties go to the candidate first in pool order. Without
    `answers_PxM` (argmax only) every candidate counts as having its own answer. Averaging the
    n_boot draws estimates each problem's expected correctness at N; acc is their mean over problems
    and [lo, hi] the central `ci` percentile interval of n_boot bootstrap resamples of the problems.
    ns default: powers of two up to M.
    """
    selection.check_rule(method)
    correct = np.asarray(correct_PxM).astype(bool)
    P, M = correct.shape
    scores = None if scores_PxM is None else np.asarray(scores_PxM, np.float64)
    if method != "majority":
        if scores is None:
            raise ValueError(f"method {method!r} needs scores_PxM")
        if scores.shape != (P, M):
            raise ValueError(f"scores shape {scores.shape} != correct shape {(P, M)}")
        if np.any(~np.isfinite(scores)):
            raise ValueError("scores contain NaN or inf")
    if answers_PxM is None:
        if method != "argmax":
            raise ValueError(f"method {method!r} needs answers_PxM")
        ids = np.broadcast_to(np.arange(M), (P, M))
    else:
        ids = selection.answer_ids(answers_PxM)
        if ids.shape != (P, M):
            raise ValueError(f"answers shape {ids.shape} != correct shape {(P, M)}")
    ns = np.asarray([2**i for i in range(int(np.log2(M)) + 1)] if ns is None else ns, np.int64)
    if np.any(ns < 1) or np.any(ns > M):
        raise ValueError(f"every N must be in [1, {M}], got {ns.tolist()}")
    rng = np.random.default_rng(seed)
    acc, lo, hi, rows = [], [], [], []
    for n in ns:
        idx = np.sort(np.argsort(rng.random((n_boot, P, M)), axis=-1)[..., :n], axis=-1)
        chosen_RxP = selection.choose(method, idx, ids, scores)
        right_RxP = np.where(chosen_RxP >= 0, correct[np.arange(P)[None, :], np.maximum(chosen_RxP, 0)], False)
        per_problem = right_RxP.astype(np.float64).mean(0)  # expected correctness of each problem at N
        rows.append(per_problem)
        acc.append(per_problem.mean())
        a, b = bootstrap_mean_ci(per_problem, rng, n_boot, ci)
        lo.append(a)
        hi.append(b)
    return Curve(ns, np.asarray(acc), np.asarray(lo), np.asarray(hi), np.stack(rows))


def bootstrap_mean_ci(x_P: np.ndarray, rng: np.random.Generator, n_boot: int, ci: float) -> tuple[float, float]:
    """Returns (lo, hi): the central `ci` percentile interval of the mean of x_P over n_boot resamples of
    its entries with replacement (drawn from `rng`)."""
    reps = x_P[rng.integers(0, x_P.size, size=(n_boot, x_P.size))].mean(1)
    q = (1.0 - ci) / 2.0
    return float(np.quantile(reps, q)), float(np.quantile(reps, 1.0 - q))


def paired_difference(a_P, b_P, *, n_boot: int, seed: int, ci: float = 0.95) -> tuple[float, float, float]:
    """Returns (mean of a - b, lo, hi): the difference of two methods' accuracies on the same problems,
    with the central `ci` percentile interval of n_boot bootstrap resamples of the problems.

    a_P, b_P: each problem's (expected) correctness under the two methods, e.g. `Curve.per_problem`
    rows. Both draw the same problems in every replicate, so what the methods share (a problem every
    method gets right or wrong) cancels: the interval of the difference is narrower than the two
    accuracies' own intervals suggest.
    """
    a, b = np.asarray(a_P, np.float64), np.asarray(b_P, np.float64)
    if a.ndim != 1 or a.shape != b.shape or not a.size:
        raise ValueError(f"paired_difference: need two non-empty 1-d arrays of one length, got {a.shape}, {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired_difference: correctness contains NaN or inf")
    if n_boot < 1 or not 0 < ci < 1:
        raise ValueError(f"paired_difference: need n_boot >= 1 and 0 < ci < 1, got {n_boot}, {ci}")
    d = a - b
    return (float(d.mean()), *bootstrap_mean_ci(d, np.random.default_rng(seed), n_boot, ci))


# ------------------------------------------------------------------------------------------ AUROC


def step_auroc(scores, labels, mask=None) -> float:
    """Returns the AUROC of step scores against binary step labels (>= 0.5 positive) over mask.

    The Mann-Whitney statistic from scipy's average ranks (a tie counts one half); NaN when either
    class is absent. The one AUROC of the project (training's eval metrics use it too).
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.float64)
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} != labels shape {y.shape}")
    keep = np.ones(s.shape, bool) if mask is None else np.asarray(mask, bool)
    s, y = s[keep], y[keep] >= 0.5
    if np.any(~np.isfinite(s)):
        raise ValueError("step scores contain NaN or inf")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def step_auroc_ci(scores_per_solution, truth_per_solution, *, n_boot: int, seed: int, ci: float = 0.95):
    """Returns (auroc, lo, hi): step AUROC with a bootstrap CI that resamples whole solutions.

    Steps of one solution are not independent (after a first error every label is 0), so the
    bootstrap draws solutions with replacement, not steps. Replicates where one class is absent are
    skipped; (nan, nan, nan) when the full set has one class.
    """
    s = [np.asarray(x, np.float64) for x in scores_per_solution]
    t = [np.asarray(x, np.float64) for x in truth_per_solution]
    if len(s) != len(t) or any(a.shape != b.shape for a, b in zip(s, t)):
        raise ValueError("step_auroc_ci: scores and truth must have one array of the same length per solution")
    a = step_auroc(np.concatenate(s), np.concatenate(t)) if s else float("nan")
    if not np.isfinite(a):
        return a, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        j = rng.integers(0, len(s), len(s))
        r = step_auroc(np.concatenate([s[i] for i in j]), np.concatenate([t[i] for i in j]))
        if np.isfinite(r):
            reps.append(r)
    q = (1.0 - ci) / 2.0
    lo, hi = np.quantile(reps, [q, 1.0 - q]) if reps else (float("nan"), float("nan"))
    return a, float(lo), float(hi)


# --------------------------------------------------------------------------------- answer grading

_INT = re.compile(r"-?\d[\d,]*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str, kind: str) -> str | None:
    """Returns the final answer in a solution text, or None.

    math: the content of the last \\boxed{} (braces balanced); gsm8k: the number after the last
    `####`, else the last \\boxed{}, else the last number; arith: the last integer.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {ANSWER_KINDS}")
    if text is None:
        return None
    if kind == "math":
        return last_boxed(text)
    if kind == "gsm8k":
        if "####" in text:
            nums = _NUMBER.findall(text.rsplit("####", 1)[1])
            if nums:
                return nums[0].replace(",", "")
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        nums = _NUMBER.findall(text)
        return nums[-1].replace(",", "").rstrip(".") if nums else None
    ints = _INT.findall(text)
    return ints[-1].replace(",", "") if ints else None


def _to_int(s) -> int | None:
    try:
        return int(str(s).strip().replace(",", ""))
    except (TypeError, ValueError):
        return None


def grade_answer(pred, gold, kind: str, timeout_s: int = 5) -> bool:
    """Returns whether the predicted answer equals the gold answer.

    arith: exact integer equality. math / gsm8k: `math_verify` equivalence of the two expressions
    (both given as answer strings, e.g. from `extract_answer`). math_verify's timeouts use SIGALRM,
    which only works in the main thread; elsewhere they are switched off. A grading error counts as
    wrong and is logged.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {ANSWER_KINDS}")
    if pred is None or gold is None:
        return False
    if kind == "arith":
        p, g = _to_int(pred), _to_int(gold)
        return p is not None and p == g
    pred, gold = str(pred).strip(), str(gold).strip()
    if pred == gold:
        return True
    from math_verify import parse, verify

    t = timeout_s if threading.current_thread() is threading.main_thread() else None
    try:
        g = parse("\\boxed{" + gold + "}", parsing_timeout=t)
        p = parse("\\boxed{" + pred + "}", parsing_timeout=t)
        return bool(g and p and verify(g, p, timeout_seconds=t))
    except Exception as e:  # math_verify raises TimeoutError and sympy errors on odd input
        log.warning("grading %r against %r failed (%s: %s); counted as wrong", pred, gold, type(e).__name__, e)
        return False


def step_validation(verifiers: dict, rows: Sequence[dict]) -> dict:
    """Returns per-verifier step AUROC (and Brier score) on labelled step-wise rows (labels/val.jsonl).

    'auroc_exact': against exact step correctness (`meta.step_correct`); 'auroc_mc': against the hard
    MC label (the training target's own kind); 'brier_mc': mean squared error to the soft MC label
    (score verifiers, whose values are probabilities).
    """
    exact = np.concatenate([np.asarray(r["meta"]["step_correct"], float) for r in rows])
    hard = np.concatenate([np.asarray(r["hard_labels"], float) for r in rows])
    soft = np.concatenate([np.asarray(r["labels"], float) for r in rows])
    out = {"solutions": len(rows), "steps": int(exact.size)}
    for name, v in verifiers.items():
        vals = np.concatenate(v.score_all([r["prompt"] for r in rows], [r["completions"] for r in rows])["values"])
        out[name] = {"auroc_exact": step_auroc(vals, exact), "auroc_mc": step_auroc(vals, hard)}
        if v.kind == "score":
            out[name]["brier_mc"] = float(np.mean((vals - soft) ** 2))
    return out
