"""prm_jax.targets: PRM800K label settings, Monte-Carlo labels, PAV advantages, Best-of-K prover."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from prm_jax import targets


def test_rating_to_label_neutral_setting():
    ratings = [1, 0, -1, 1]
    np.testing.assert_array_equal(targets.rating_to_label(ratings, "positive"), [1, 1, 0, 1])
    np.testing.assert_array_equal(targets.rating_to_label(ratings, "negative"), [1, 0, 0, 1])
    assert targets.rating_to_label(ratings).dtype == np.float32
    got = targets.rating_to_label(jnp.array(ratings), "negative")
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), [1, 0, 0, 1])


@pytest.mark.parametrize("bad", [[1, 2], [1, -2], [1, None]])
def test_rating_to_label_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        targets.rating_to_label(bad)
    with pytest.raises(ValueError, match="neutral"):
        targets.rating_to_label([1], neutral="ignore")


def test_after_first_error_policy():
    labels, mask = targets.prm800k_step_labels([1, 0, -1, 1, -1], "positive", "drop")
    np.testing.assert_array_equal(labels, [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(mask, [True, True, True, False, False])
    labels, mask = targets.prm800k_step_labels([1, 0, -1, 1], "negative", "drop")
    np.testing.assert_array_equal(mask, [True, True, False, False])
    _, mask = targets.prm800k_step_labels([1, 0, -1, 1], "negative", "keep")
    assert mask.all()
    # batched, with an existing mask (a masked error does not count), numpy vs jax agree
    y = np.array([[1, 0, 1, 1], [0.3, 1, 0, 1], [1, 1, 1, 1]], np.float32)
    m = np.array([[1, 0, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
    want = np.array([[1, 0, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]], bool)
    np.testing.assert_array_equal(targets.mask_after_first_error(y, m, "drop"), want)
    np.testing.assert_array_equal(
        np.asarray(targets.mask_after_first_error(jnp.asarray(y), jnp.asarray(m), "drop")), want
    )
    with pytest.raises(ValueError, match="after_first_error"):
        targets.mask_after_first_error(y, m, "truncate")


def test_mc_labels():
    success = np.array([[[1, 0, 0, 1], [0, 0, 0, 0]], [[1, 1, 1, 1], [0, 1, 0, 0]]], bool)
    hard, soft = targets.mc_labels(success)
    np.testing.assert_array_equal(hard, [[1, 0], [1, 1]])
    np.testing.assert_allclose(soft, [[0.5, 0.0], [1.0, 0.25]])
    rng = np.random.default_rng(0)
    s = rng.random((3, 5, 8)) < 0.3
    hard, soft = targets.mc_labels(jnp.asarray(s))
    np.testing.assert_allclose(np.asarray(soft), s.mean(-1), atol=1e-7)
    np.testing.assert_array_equal(np.asarray(hard), s.any(-1))
    with pytest.raises(ValueError, match="rollout"):
        targets.mc_labels(np.zeros((2, 3, 0)))


def np_pav_advantages(q, v0, m):
    out = np.zeros_like(q, dtype=np.float64)
    for b in range(q.shape[0]):
        prev = v0[b]
        for t in range(q.shape[1]):
            if m[b, t]:
                out[b, t] = q[b, t] - prev
                prev = q[b, t]
    return out


def test_pav_advantages_numpy_reference_and_telescoping():
    rng = np.random.default_rng(1)
    B, T = 6, 7
    q = rng.random((B, T)).astype(np.float32)
    v0 = rng.random(B).astype(np.float32)
    m = rng.random((B, T)) < 0.7
    m[0] = True
    m[1] = False
    a = np.asarray(jax.jit(targets.pav_advantages)(q, v0, m))
    np.testing.assert_allclose(a, np_pav_advantages(q, v0, m), atol=1e-6)
    for b in range(B):
        idx = np.nonzero(m[b])[0]
        q_last = q[b, idx[-1]] if len(idx) else v0[b]
        assert a[b].sum() == pytest.approx(q_last - v0[b], abs=1e-6)


def test_pav_advantages_two_step_hand_example():
    a = targets.pav_advantages(jnp.array([[0.6, 0.2, 0.9]]), jnp.array([0.5]), jnp.array([[True, True, False]]))
    np.testing.assert_allclose(np.asarray(a), [[0.1, -0.4, 0.0]], atol=1e-7)


def test_best_of_k_q():
    np.testing.assert_allclose(targets.best_of_k_q([0.0, 0.5, 1.0, 0.2], 4), [0, 1 - 0.5**4, 1, 1 - 0.8**4], rtol=1e-6)
    np.testing.assert_allclose(targets.best_of_k_q(np.array([0.3]), 1), [0.3], rtol=1e-6)
    assert isinstance(targets.best_of_k_q(jnp.array([0.3]), 2), jax.Array)
    with pytest.raises(ValueError):
        targets.best_of_k_q([0.3], 0)
