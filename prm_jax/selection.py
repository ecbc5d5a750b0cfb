"""Answer selection among candidate solutions: one rule shared by search and by best-of-N curves.

Rules (`SELECTIONS`):
  argmax         the answer of the highest-scored candidate;
  weighted_vote  the answer whose candidates' scores sum highest; scores must be probabilities in
                 [0, 1] (a signed score, e.g. an implicit PRM's reward, is mapped first: sigmoid);
  majority       the most frequent answer (scores unused).
Candidates without an answer (None) never win; when every answer is None the choice is None.
Ties go to the candidate seen first (lowest index), under every rule. `search.select_answer` and
`evaluate.best_of_n_curve` both call `choose`, so they make the same choice on the same candidates.

Numpy only (no jax): the evaluation code imports it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

SELECTIONS = ("argmax", "weighted_vote", "majority")


def check_rule(rule: str) -> None:
    """Raises ValueError for an unknown selection rule."""
    if rule not in SELECTIONS:
        raise ValueError(f"unknown answer selection method {rule!r}; expected one of {SELECTIONS}")


def check_vote_weights(scores) -> None:
    """Raises ValueError unless every score is a probability in [0, 1] (weighted vote's weights)."""
    s = np.asarray(scores, np.float64)
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        raise ValueError(
            f"weighted vote sums probabilities, but {int(bad.sum())} of {s.size} scores are outside "
            f"[0, 1] (e.g. {float(s[bad][0])!r}); map signed scores such as an implicit PRM's reward "
            "with a sigmoid first (search.vote_weights)"
        )


def answer_ids(answers_PxM) -> np.ndarray:
    """Returns int64 [P, M]: per row, an id per distinct answer in order of first appearance; -1 for None."""
    rows = [list(r) for r in answers_PxM]
    M = len(rows[0]) if rows else 0
    ids = np.full((len(rows), M), -1, np.int64)
    for p, row in enumerate(rows):
        if len(row) != M:
            raise ValueError(f"answers row {p} has {len(row)} entries, expected {M}")
        seen: dict = {}
        for j, a in enumerate(row):
            if a is not None:
                ids[p, j] = seen.setdefault(a, len(seen))
    return ids


def choose(rule: str, idx_RxPxN: np.ndarray, ids_PxM: np.ndarray, scores_PxM=None) -> np.ndarray:
    """Returns int64 [R, P]: the pool index of the candidate chosen from each subset, -1 for none.

    idx_RxPxN: per replicate and row, the pool indices of a subset, in increasing order (the order
    that decides ties); ids_PxM: answer ids from `answer_ids` (-1 = no answer); scores_PxM: candidate
    scores (argmax, weighted_vote). For the vote rules the chosen candidate is the first one in the
    subset holding the winning answer.
    """
    check_rule(rule)
    idx = np.asarray(idx_RxPxN, np.int64)
    R, P, N = idx.shape
    rows = np.arange(P)[None, :, None]
    a = ids_PxM[rows, idx]  # [R, P, N]
    has = a >= 0
    if rule != "majority":
        if scores_PxM is None:
            raise ValueError(f"selection {rule!r} needs scores")
        s = np.asarray(scores_PxM, np.float64)[rows, idx]
        if rule == "weighted_vote":
            check_vote_weights(s[has])
        elif np.isnan(s[has]).any():
            raise ValueError("scores contain NaN")
    if rule == "argmax":
        best = np.max(np.where(has, s, -np.inf), axis=-1, keepdims=True)
        win = has & (s == best)
        pos = np.argmax(win, axis=-1)  # the first winner in subset order
    else:
        M = ids_PxM.shape[1]
        w = np.ones(a.shape) if rule == "majority" else s
        flat = (np.arange(R * P).reshape(R, P, 1) * M + np.where(has, a, 0))[has]
        totals = np.bincount(flat, weights=w[has], minlength=R * P * M).reshape(R, P, M)
        first = np.full(R * P * M, N, np.int64)
        np.minimum.at(first, flat, np.broadcast_to(np.arange(N), a.shape)[has])
        first = first.reshape(R, P, M)
        present = first < N
        top = np.max(np.where(present, totals, -np.inf), axis=-1, keepdims=True)
        # among the answers with the top total, the one seen first
        winner_first = np.where(present & (totals == top), first, N).min(axis=-1)
        pos = np.minimum(winner_first, N - 1)
    chosen = np.take_along_axis(idx, pos[..., None], axis=-1)[..., 0]
    return np.where(has.any(-1), chosen, -1)


def select_index(answers: Sequence[Any], scores=None, rule: str = "argmax") -> int:
    """Returns the index of the candidate chosen among all of `answers` (-1 when none has an answer)."""
    ids = answer_ids([list(answers)])
    if ids.shape[1] == 0:
        return -1
    scores = None if scores is None else np.asarray(scores, np.float64).reshape(1, -1)
    return int(choose(rule, np.arange(ids.shape[1])[None, None, :], ids, scores)[0, 0])


def select_answer(answers: Sequence[Any], scores=None, rule: str = "argmax") -> Any:
    """Returns the answer chosen by `rule` among `answers` (None when no candidate has one)."""
    j = select_index(answers, scores, rule)
    return None if j < 0 else list(answers)[j]
