"""Answer selection: search.select_answer and evaluate.best_of_n_curve make the same choice, checked
against hand-computed cases and a brute-force reference over every subset of small pools."""

import itertools

import numpy as np
import pytest

from prm_jax import evaluate, search, selection

# (answers, scores, rule, chosen answer), by hand: None never wins, ties go to the first candidate.
CASES = [
    (["x", "y", None, None], None, "majority", "x"),  # the case: None is no answer
    ([None, None, "x", "y"], None, "majority", "x"),
    ([None, None], None, "majority", None),
    (["a", "b", "b", "a"], None, "majority", "a"),  # tie 2:2 -> first seen
    (["b", "a", "a", "b", "c"], None, "majority", "b"),
    ([None, "x", "y"], [0.9, 0.2, 0.3], "argmax", "y"),  # the best-scored candidate has no answer
    (["x", "y", "z"], [0.5, 0.7, 0.7], "argmax", "y"),  # score tie -> first
    (["x", "y", "x"], [0.3, 0.5, 0.3], "weighted_vote", "x"),  # 0.6 > 0.5
    (["x", "y", "y", "x"], [0.25, 0.25, 0.25, 0.25], "weighted_vote", "x"),  # tie -> first seen
    ([None, "y", "z"], [1.0, 0.1, 0.2], "weighted_vote", "z"),
    ([None, None, None], [0.1, 0.2, 0.3], "argmax", None),
]


@pytest.mark.parametrize("answers,scores,rule,want", CASES)
def test_select_answer_and_curve_agree_on_hand_cases(answers, scores, rule, want):
    assert search.select_answer(answers, None if scores is None else np.asarray(scores), rule) == want
    # the curve at N = M (the whole pool) is that one choice, graded
    for gold in {a for a in answers if a is not None} | {"nothing"}:
        correct = np.asarray([[a == gold for a in answers]])
        sc = None if scores is None else np.asarray([scores], np.float64)
        c = evaluate.best_of_n_curve(sc, correct, [answers], ns=[len(answers)], method=rule, n_boot=20)
        assert c.acc[0] == float(want == gold), (gold, c.acc)


def _brute_choice(rule, answers, scores):
    """Returns the index of the chosen candidate by the rule, written out directly (-1: none)."""
    cand = [j for j, a in enumerate(answers) if a is not None]
    if not cand:
        return -1
    if rule == "argmax":
        best = max(scores[j] for j in cand)
        return next(j for j in cand if scores[j] == best)
    totals = {}
    for j in cand:
        totals[answers[j]] = totals.get(answers[j], 0.0) + (1.0 if rule == "majority" else scores[j])
    best = max(totals.values())
    return next(j for j in cand if totals[answers[j]] == best)


@pytest.mark.parametrize("rule", selection.SELECTIONS)
def test_vectorised_choice_equals_brute_force_on_every_subset(rule):
    rng = np.random.default_rng(3)
    P, M = 5, 6
    answers = [[None if rng.random() < 0.25 else int(rng.integers(0, 3)) for _ in range(M)] for _ in range(P)]
    scores = np.round(rng.random((P, M)), 1)  # coarse: many exact ties
    ids = selection.answer_ids(answers)
    for n in (1, 2, 3, 6):
        subsets = list(itertools.combinations(range(M), n))
        idx = np.asarray([[s for s in subsets] for _ in range(P)]).transpose(1, 0, 2)  # [R, P, n]
        got = selection.choose(rule, idx, ids, scores)
        for r, sub in enumerate(subsets):
            for p in range(P):
                j = _brute_choice(rule, [answers[p][k] for k in sub], [scores[p, k] for k in sub])
                assert got[r, p] == (-1 if j < 0 else sub[j]), (rule, n, sub, p)
                # search's own entry point on that subset agrees
                a = search.select_answer([answers[p][k] for k in sub], scores[p, list(sub)], rule)
                assert a == (None if j < 0 else answers[p][sub[j]])


def test_curve_equals_exact_expectation_of_select_answer_over_subsets():
    rng = np.random.default_rng(4)
    P, M, n = 4, 5, 2
    answers = [[None if rng.random() < 0.3 else int(rng.integers(0, 2)) for _ in range(M)] for _ in range(P)]
    correct = np.asarray([[a == 0 for a in row] for row in answers])
    scores = rng.random((P, M))
    for rule in selection.SELECTIONS:
        exact = np.mean(
            [
                np.mean(
                    [
                        search.select_answer([answers[p][k] for k in sub], scores[p, list(sub)], rule) == 0
                        for sub in itertools.combinations(range(M), n)
                    ]
                )
                for p in range(P)
            ]
        )
        c = evaluate.best_of_n_curve(scores, correct, answers, ns=[n], method=rule, n_boot=4000, seed=1)
        assert c.acc[0] == pytest.approx(exact, abs=0.02), rule


def test_weighted_vote_refuses_signed_scores_and_maps_implicit_rewards():
    """Answers [a, a, a, b] with implicit rewards [-0.1, -0.1, -0.1, -0.2]: summing the raw rewards
    chose b; weighted vote sums probabilities, so raw rewards are refused and sigmoid-mapped ones pick a."""
    answers, rewards = ["a", "a", "a", "b"], np.asarray([-0.1, -0.1, -0.1, -0.2])
    with pytest.raises(ValueError, match="outside \\[0, 1\\].*sigmoid"):
        search.select_answer(answers, rewards, "weighted_vote")
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        evaluate.best_of_n_curve(
            rewards[None], np.asarray([[1, 1, 1, 0]], bool), [answers], ns=[4], method="weighted_vote"
        )
    w = search.vote_weights(rewards, signed=True)
    np.testing.assert_allclose(w, 1 / (1 + np.exp(-rewards)))
    assert search.select_answer(answers, w, "weighted_vote") == "a"
    # best_of_n on solutions scored by an implicit PRM maps them the same way
    sols = [
        search.Solution([str(i)], a, step_scores=np.asarray([r]), signed=True)
        for i, (a, r) in enumerate(zip(answers, rewards))
    ]
    assert search.best_of_n(sols, "min", "weighted_vote") == "a"
    with pytest.raises(ValueError, match="outside"):
        search.vote_weights(np.asarray([0.2, 1.5]), signed=False)
