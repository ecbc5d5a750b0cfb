"""RL rewards and advantages against brute-force loops and hand-computed values."""

import numpy as np
import pytest

from prm_jax import rewards as R


def _batch(rng, B=6, L=9):
    """A padded batch: prompt tokens, then a response of 2..L-2 tokens, then padding."""
    mask = np.zeros((B, L), bool)
    for b in range(B):
        start, n = int(rng.integers(1, 3)), int(rng.integers(2, L - 2))
        mask[b, start : min(L, start + n)] = True
    return mask


def test_leave_one_out_is_rloo_for_one_token_and_primes_formula_per_token():
    rng = np.random.default_rng(0)
    B, G = 6, 3
    resp = _batch(rng, B)
    correct = rng.integers(0, 2, B).astype(float)
    out = R.leave_one_out(R.outcome_token_rewards(correct, resp), R.last_token_mask(resp), G)
    for b in range(B):  # the outcome sits at the last response token: r_i - mean of the others
        g = b // G * G
        others = [correct[j] for j in range(g, g + G) if j != b]
        last = np.nonzero(resp[b])[0][-1]
        assert out[b, last] == pytest.approx(correct[b] - np.mean(others))
        assert np.count_nonzero(out[b]) <= 1
    r = rng.normal(size=resp.shape)
    out = R.leave_one_out(r, resp, G)
    for b in range(B):  # PRIME's per-token baseline, written out
        g = b // G * G
        means = [r[j][resp[j]].mean() for j in range(g, g + G)]
        for t in np.nonzero(resp[b])[0]:
            others = sum(means) - means[b - g]
            want = r[b, t] - (others + means[b - g] - r[b, t]) / (G - 1)
            assert out[b, t] == pytest.approx(want)
        assert (out[b][~resp[b]] == 0).all()


def test_returns_whiten_and_group_normalized_match_numpy():
    rng = np.random.default_rng(1)
    resp = _batch(rng)
    r = rng.normal(size=resp.shape)
    ret = R.returns(r, resp)
    for b in range(resp.shape[0]):
        for t in range(resp.shape[1]):
            want = sum(r[b, s] for s in range(t, resp.shape[1]) if resp[b, s]) if resp[b, t] else 0.0
            assert ret[b, t] == pytest.approx(want)
    w = R.whiten(ret, resp)
    assert w[resp].mean() == pytest.approx(0.0, abs=1e-12) and w[resp].std() == pytest.approx(1.0, abs=1e-6)
    seq = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    g = R.group_normalized(seq, 3)
    assert g[:3] == pytest.approx((seq[:3] - seq[:3].mean()) / (seq[:3].std() + 1e-6))
    assert g[3:] == pytest.approx([0.0, 0.0, 0.0])  # a group all right: no signal


def test_prm_credit_sum_and_pure_min_form_hand_computed():
    p = np.array([[0.9, 0.4, 0.8, 0.5]])
    m = np.array([[True, True, True, False]])
    r = np.array([0.8, -0.2, 0.6])
    assert R.prm_step_rewards(p, m, "sum")[0] == pytest.approx([*r, 0.0])
    w = np.exp(-r / 0.1) / np.exp(-r / 0.1).sum()
    out = R.prm_step_rewards(p, m, "min", 0.1)
    assert out[0] == pytest.approx([*(r * w), 0.0])
    # the row's credit is a soft minimum: it tends to min_i r_i as T -> 0
    assert R.prm_step_rewards(p, m, "min", 1e-4)[0].sum() == pytest.approx(-0.2, abs=1e-6)
    assert R.prm_step_rewards(p, m, "min", 0.1)[0].sum() < r.mean()
    with pytest.raises(ValueError, match="credit"):
        R.prm_step_rewards(p, m, "max")
    with pytest.raises(ValueError, match="temperature"):
        R.prm_step_rewards(p, m, "min", 0.0)


def test_pav_rewards_hand_computed_and_padding_must_trail():
    q_pi = np.array([[0.5, 0.6, 0.2]])
    q_mu = np.array([[0.7, 0.9, 0.3]])
    m = np.array([[True, True, False]])
    out = R.pav_step_rewards(q_pi, q_mu, [0.6], m, alpha=3.0)
    assert out[0] == pytest.approx([0.5 + 3 * (0.7 - 0.6), 0.6 + 3 * (0.9 - 0.7), 0.0])
    assert R.pav_step_rewards(q_pi, q_mu, [0.6], m, alpha=3.0, q_weight=0.0)[0] == pytest.approx([0.3, 0.6, 0.0])
    with pytest.raises(ValueError, match="steps first"):
        R.pav_step_rewards(q_pi, q_mu, [0.6], np.array([[True, False, True]]), alpha=1.0)


def test_token_placement_prime_rewards_and_advantages_compose():
    rng = np.random.default_rng(2)
    resp = _batch(rng, B=4, L=10)
    step_pos = np.array([[np.nonzero(row)[0][-1], -1] for row in resp])
    placed = R.place_step_rewards([[0.5, 9.0]] * 4, step_pos, 10)
    assert placed.sum() == pytest.approx(2.0) and all(placed[b, step_pos[b, 0]] == 0.5 for b in range(4))
    lp, ref = rng.normal(size=resp.shape), rng.normal(size=resp.shape)
    pr = R.prime_token_rewards(lp, ref, resp, 0.05)
    assert pr[resp] == pytest.approx(0.05 * (lp - ref)[resp]) and (pr[~resp] == 0).all()
    correct = np.array([1.0, 0.0, 0.0, 1.0])
    out_r, last = R.outcome_token_rewards(correct, resp), R.last_token_mask(resp)
    adv = R.advantages({"outcome": (out_r, last, 5.0), "prime": (pr, resp, 5.0)}, resp, 2, normalize=False)
    want = R.returns(5 * R.leave_one_out(out_r, last, 2) + 5 * R.leave_one_out(pr, resp, 2), resp)
    assert adv == pytest.approx(want)
    # outcome only, RLOO: every response token of a right solution among a wrong one gets +1 * coef
    adv = R.advantages({"outcome": (out_r, last, 1.0)}, resp, 2, normalize=False)
    assert adv[0][resp[0]] == pytest.approx(1.0) and adv[1][resp[1]] == pytest.approx(-1.0)
    g = R.advantages({"outcome": (out_r, last, 1.0)}, resp, 2, baseline="grpo", normalize=False)
    assert g[0][resp[0]] == pytest.approx(1.0, abs=1e-5) and g[1][resp[1]] == pytest.approx(-1.0, abs=1e-5)
    w = R.advantages({"outcome": (out_r, last, 1.0)}, resp, 2)
    assert w[resp].mean() == pytest.approx(0.0, abs=1e-9)


def test_bad_inputs_are_clear_errors():
    resp = np.ones((4, 3), bool)
    with pytest.raises(ValueError, match="groups of 3"):
        R.leave_one_out(np.zeros((4, 3)), resp, 3)
    with pytest.raises(ValueError, match="at least 2"):
        R.group_normalized(np.zeros(4), 1)
    with pytest.raises(ValueError, match="no response token"):
        R.outcome_token_rewards([1, 0], np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="outside"):
        R.place_step_rewards([[1.0]], [[5]], 3)
    with pytest.raises(ValueError, match="baseline"):
        R.advantages({"o": (np.zeros((4, 3)), resp, 1.0)}, resp, 2, baseline="ppo")
