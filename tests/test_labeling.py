"""Labelling: MC labels, OmegaPRM binary search, PAV prover targets, and the step-wise jsonl round trip."""

import json

import jax
import numpy as np
import pytest

from prm_jax import labeling, targets
from prm_jax.sampling import Continuation


class CoinPolicy:
    """Rollouts finish with 'ok' w.p. p_good from a prefix without 'bad' steps, never after one.

    The success probability is a known function of the prefix, so MC estimates have a reference.
    """

    def __init__(self, p_good=0.75, seed=0):
        self.p_good, self.rng, self.rollouts = p_good, np.random.default_rng(seed), 0

    def continue_from(
        self, problems, prefixes, rng, *, mode="full", temperature=1.0, top_p=1.0, max_new_tokens=64, desc=None
    ):
        out = []
        for pre in prefixes:
            p = 0.0 if "bad" in pre else self.p_good ** (1.0 / temperature)
            out.append(Continuation(["ok" if self.rng.random() < p else "wrong"], True, 3))
        self.rollouts += len(prefixes)
        return out


def grade(problem, steps):
    return "bad" not in steps and steps[-1] == "ok"


def _items():
    return [
        ("p1", ["s", "s", "bad", "s", "wrong"], False),  # first error at step 2
        ("p2", ["bad", "s", "wrong"], False),  # first error at step 0
        ("p3", ["s", "s", "s", "ok"], True),
        ("p4", ["s", "s", "s", "s", "s", "bad", "wrong"], False),
    ]


def test_mc_values_estimate_success_probability_and_count_rollouts():
    pol = CoinPolicy(p_good=0.75)
    items = _items()
    mc, used = labeling.mc_values(pol, grade, items, 400, jax.random.PRNGKey(0))
    n_prefixes = sum(len(s) - 1 for _, s, _ in items)
    assert used == pol.rollouts == n_prefixes * 400
    for (_, steps, correct), m in zip(items, mc):
        bad = next((i for i, s in enumerate(steps) if s == "bad"), len(steps))
        ref = np.asarray([0.75 if t < bad else 0.0 for t in range(len(steps))])
        ref[-1] = float(correct)  # the whole solution is its own outcome: no rollouts
        np.testing.assert_allclose(m, ref, atol=0.07)
    hard, soft = targets.mc_labels(np.ones((1, 2, 3)))  # the targets helper the labels agree with
    assert hard.shape == soft.shape == (1, 2)


def test_omega_binary_search_finds_first_error_with_fewer_rollouts():
    items = _items()
    pol = CoinPolicy(p_good=0.999)
    fe, used = labeling.omega_first_errors(pol, grade, items, 8, jax.random.PRNGKey(0))
    assert fe.tolist() == [2, 0, -1, 5]
    full = sum(len(s) - 1 for _, s, c in items if not c) * 8
    assert used == pol.rollouts and used < full
    # Bisection over steps 0..T-2: ceil(log2(T)) rounds at most per wrong solution.
    assert used <= sum(int(np.ceil(np.log2(len(s)))) for _, s, c in items if not c) * 8


class KeyedCoinPolicy:
    """As CoinPolicy, but a rollout's outcome is a function of its key alone (as the Sampler's draws are)."""

    def __init__(self, p_good):
        self.p_good = p_good

    def continue_from(self, problems, prefixes, rng, *, mode="full", temperature=1.0, max_new_tokens=64, desc=None):
        keys = np.asarray(rng)
        assert keys.shape == (len(prefixes), 2)  # one key per rollout
        out = []
        for pre, key in zip(prefixes, keys):
            u = np.random.default_rng([int(key[0]), int(key[1])]).random()
            out.append(Continuation(["ok" if "bad" not in pre and u < self.p_good else "wrong"], True, 3))
        return out


class KeyRecorder(KeyedCoinPolicy):
    """A KeyedCoinPolicy that keeps every rollout key it was given."""

    def __init__(self, p_good):
        super().__init__(p_good)
        self.keys = []

    def continue_from(self, problems, prefixes, rng, **kw):
        self.keys += [tuple(int(x) for x in k) for k in np.asarray(rng)]
        return super().continue_from(problems, prefixes, rng, **kw)


def test_every_rollout_of_a_labelling_call_has_a_key_of_its_own():
    """MC, V0 and prover rollouts of one `label_solutions` call never share a key (a shared key is
    shared noise: two prefixes' draws that should be independent would be correlated); counted by brute
    force over every key the policy saw."""
    pol = KeyRecorder(p_good=0.5)
    items = _items()
    _, stats = labeling.label_solutions(pol, grade, items, jax.random.PRNGKey(3), k=3, prover="temperature:0.5")
    assert len(pol.keys) == stats["mc_rollouts"] + stats["v0_rollouts"] + stats["prover_rollouts"]
    assert len(set(pol.keys)) == len(pol.keys)


def _bisect(hard, correct):
    """Returns the binary search's first error read off full-MC hard labels (brute-force reference)."""
    if correct:
        return -1
    lo, hi = 0, len(hard) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if hard[mid] > 0 else (lo, mid)
    return lo


def test_omega_on_full_mcs_keys_draws_full_mcs_rollouts():
    """Given full MC's rng, OmegaPRM's probes draw the rollouts full MC drew for the same prefixes, so
    its first errors are the binary search run on full MC's hard labels, item by item; a fresh rng
    gives other draws."""
    rs = np.random.default_rng(0)
    items = []
    for i in range(60):
        steps = ["s"] * int(rs.integers(2, 7))
        bad = int(rs.integers(0, len(steps) + 1))
        if bad < len(steps):
            steps[bad] = "bad"
        items.append((f"p{i}", steps + ["x"], bad == len(steps) and bool(rs.random() < 0.5)))
    pol = KeyedCoinPolicy(p_good=0.3)  # K = 2: many prefixes before the error get MC = 0 (noise)
    mc, _ = labeling.mc_values(pol, grade, items, 2, jax.random.PRNGKey(5))
    want = [_bisect([float(m > 0) for m in v], c) for v, (_, _, c) in zip(mc, items)]
    first_zero = [labeling._first_zero([float(m > 0) for m in v]) if not c else -1 for v, (_, _, c) in zip(mc, items)]
    fe, _ = labeling.omega_first_errors(pol, grade, items, 2, jax.random.PRNGKey(5))
    assert fe.tolist() == want
    assert want != first_zero  # non-monotone MC values: where the search and the full scan part
    fresh, _ = labeling.omega_first_errors(pol, grade, items, 2, jax.random.PRNGKey(6))
    assert fresh.tolist() != want


def _first_bad(problem, steps):
    return next((i for i, s in enumerate(steps) if s == "bad"), -1)


def test_first_error_agreement_against_hand_counts():
    items = _items()
    # A policy that never fails from a good prefix: every MC draw is exact, so all agree.
    pol = CoinPolicy(p_good=1.0)
    fe, _ = labeling.omega_first_errors(pol, grade, items, 2, jax.random.PRNGKey(0))
    out = labeling.first_error_agreement(
        pol,
        grade,
        items,
        fe,
        np.asarray([2, 0, -1, 5]),
        2,
        jax.random.PRNGKey(1),
        max_new_tokens=8,
        first_error=_first_bad,
    )
    assert out["omega_first_error_matches_full_mc"] == out["full_mc_repeat_first_error_matches_full_mc"] == 1.0
    assert out["omega_own_draw_first_error_matches_full_mc"] == 1.0
    assert out["omega_first_error_exact_match"] == out["mc_hard_first_error_exact_match"] == 1.0
    assert out["solutions_with_error_in_omega_subset"] == 3
    # One that never succeeds: every prefix's MC value is 0, so full MC puts every first error at step 0
    # (the right solution p3 too), a second draw agrees on all 4, OmegaPRM (which skips right solutions)
    # on 3 of 4, and both find the exact first error only for p2 (1 of the 3 wrong ones).
    pol = CoinPolicy(p_good=0.0)
    fe, _ = labeling.omega_first_errors(pol, grade, items, 2, jax.random.PRNGKey(0))
    assert fe.tolist() == [0, 0, -1, 0]
    out = labeling.first_error_agreement(
        pol,
        grade,
        items,
        fe,
        np.asarray([0, 0, 0, 0]),
        2,
        jax.random.PRNGKey(1),
        max_new_tokens=8,
        first_error=_first_bad,
    )
    assert out["omega_first_error_matches_full_mc"] == 0.75 and out["full_mc_repeat_first_error_matches_full_mc"] == 1.0
    assert out["omega_own_draw_first_error_matches_full_mc"] == 0.75
    assert out["omega_first_error_exact_match"] == out["mc_hard_first_error_exact_match"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("prover", ["bok:4", "same"])
def test_label_solutions_analytic_prover(prover, tmp_path):
    pol = CoinPolicy(p_good=0.75, seed=1)
    items = _items()
    out, stats = labeling.label_solutions(
        pol,
        grade,
        items,
        jax.random.PRNGKey(0),
        k=200,
        prover=prover,
        step_truth=lambda p, s: [x != "bad" for x in s],
        answer_fn=lambda p: "ok",
    )
    assert stats["mc_rollouts"] == sum(len(s) - 1 for _, s, _ in items) * 200
    assert stats["v0_rollouts"] == 4 * 200
    kk = 4 if prover == "bok:4" else 1
    for lab in out:
        np.testing.assert_allclose(lab.q, 1 - (1 - np.asarray(lab.soft)) ** kk, rtol=1e-5)
        assert lab.hard == [float(x > 0) for x in lab.soft]
        assert lab.v0 == pytest.approx(1 - (1 - lab.meta["v0_pi"]) ** kk, rel=1e-5)
        assert abs(lab.meta["v0_pi"] - 0.75) < 0.1
    assert out[1].meta["step_correct"] == [False, True, True]
    # The jsonl is what the training configs read: the data reader parses it into Records.
    from prm_jax.data import readers

    path = tmp_path / "labels.jsonl"
    labeling.write_jsonl(path, out)
    recs = readers.read_all("stepwise_jsonl", [str(path)])
    assert len(recs) == 4 and recs[0].step_labels == pytest.approx(out[0].soft)
    assert recs[0].q_values == pytest.approx(out[0].q) and recs[0].v0 == pytest.approx(out[0].v0)
    assert [r.outcome for r in recs] == [0.0, 0.0, 1.0, 0.0]


def test_label_solutions_temperature_prover_uses_its_own_rollouts():
    pol = CoinPolicy(p_good=0.5, seed=2)
    out, stats = labeling.label_solutions(
        pol, grade, _items()[:1], jax.random.PRNGKey(0), k=400, prover="temperature:0.5"
    )
    # At temperature 0.5 the coin succeeds w.p. 0.5 ** 2 = 0.25 from a good prefix.
    np.testing.assert_allclose(out[0].q[:2], [0.25, 0.25], atol=0.07)
    np.testing.assert_allclose(out[0].soft[:2], [0.5, 0.5], atol=0.07)
    assert stats["prover_rollouts"] == 4 * 400 + 400


def test_bad_prover_and_bad_jsonl(tmp_path):
    with pytest.raises(ValueError, match="not analytic"):
        labeling.prover_q("best:4", np.zeros(2))
    with pytest.raises(ValueError, match="prover_policy"):
        labeling.label_solutions(CoinPolicy(), grade, _items()[:1], jax.random.PRNGKey(0), k=2, prover="policy")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "x"}) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        labeling.read_jsonl(path)


class ScriptedPolicy:
    """Returns scripted continuations in order and counts their tokens as a Sampler does."""

    def __init__(self, script):
        self.script = list(script)
        self.sampler = type("S", (), {"tokens_generated": 0, "seconds": 0.0})()

    def continue_from(self, problems, prefixes, rng, *, mode="full", max_new_tokens=64, **_):
        out = [self.script.pop(0) for _ in prefixes]
        self.sampler.tokens_generated += sum(c.num_tokens for c in out)
        return out

    def answer(self, steps):
        return steps[-1] if steps else None


def test_sample_outcomes_labels_only_the_outcome_and_counts_the_sampler_tokens(tmp_path):
    from prm_jax import jsonio
    from prm_jax.data import readers

    script = [
        Continuation(["s", "ok"], True, 5),  # right
        Continuation(["bad", "ok"], True, 6),  # wrong (grade)
        Continuation(["s", "ok"], False, 64),  # unfinished: graded wrong, as the MC labels do
        Continuation([], False, 64),  # no step: left out, counted
    ]
    pol = ScriptedPolicy(script)
    recs, stats = labeling.sample_outcomes(
        pol, ["p1", "p2"], jax.random.PRNGKey(0), samples=2, solution_tokens=64, grade=grade
    )
    assert recs == [
        {"prompt": "p1", "steps": ["s", "ok"], "correct": True},
        {"prompt": "p1", "steps": ["bad", "ok"], "correct": False},
        {"prompt": "p2", "steps": ["s", "ok"], "correct": False},
    ]
    assert stats["outcome_solutions"] == 3 and stats["outcome_solutions_without_steps"] == 1
    assert stats["outcome_sampler_tokens"] == 5 + 6 + 64 + 64 and stats["outcome_accuracy"] == pytest.approx(1 / 3)
    # The file is the outcome jsonl format: outcome labels, no step labels.
    path = str(tmp_path / "outcomes.jsonl")
    jsonio.write_jsonl(path, recs)
    got = readers.read_all("outcome_jsonl", path)
    assert [r.outcome for r in got] == [1.0, 0.0, 0.0] and all(r.step_labels is None for r in got)
    assert [r.steps for r in got] == [x["steps"] for x in recs]


def _outcomes_with_truth(script, grade_fn):
    return labeling.sample_outcomes(
        ScriptedPolicy(script),
        ["p1"],
        jax.random.PRNGKey(0),
        samples=len(script),
        solution_tokens=64,
        grade=grade_fn,
        step_truth=lambda p, steps: [s != "bad" for s in steps],
    )


def test_sample_outcomes_adds_exact_step_labels_from_step_truth():
    recs, stats = _outcomes_with_truth(
        [Continuation(["s", "ok"], True, 5), Continuation(["bad", "ok"], True, 6)], grade
    )
    assert [r["exact_labels"] for r in recs] == [[1.0, 1.0], [0.0, 1.0]]
    assert [r["correct"] for r in recs] == [True, False]
    assert stats["outcome_right_with_wrong_step"] == 0.0  # the one right solution has no wrong step
    script = [
        Continuation(["bad", "ok"], True, 5),
        Continuation(["s", "ok"], True, 6),
        Continuation(["s", "s"], True, 6),
    ]
    # right by luck: a wrong step, the right answer
    _, stats = _outcomes_with_truth(script, lambda p, steps: steps[-1] == "ok")
    assert stats["outcome_right_with_wrong_step"] == pytest.approx(1 / 2)
