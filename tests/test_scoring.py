"""prm_jax.scoring against numpy references, hand-computed values and properties."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from prm_jax import scoring


def _ragged_mask(rng, B, T):
    lengths = rng.integers(0, T + 1, size=B)
    lengths[0] = T
    lengths[1] = 0
    return np.arange(T)[None, :] < lengths[:, None]


def np_logprobs(logits, tokens):
    B, L, V = logits.shape
    out = np.zeros((B, L))
    for b in range(B):
        for t in range(1, L):
            row = logits[b, t - 1].astype(np.float64)
            lse = np.log(np.sum(np.exp(row - row.max()))) + row.max()
            out[b, t] = row[tokens[b, t]] - lse
    return out


def test_gather_steps_reads_markers_and_zeroes_padding():
    x = jnp.arange(12, dtype=jnp.float32).reshape(2, 6) + 1
    pos = jnp.array([[1, 4, -1], [0, -1, -1]])
    got = np.asarray(jax.jit(scoring.gather_steps)(x, pos))
    np.testing.assert_array_equal(got, [[2, 5, 0], [7, 0, 0]])


def test_token_logprobs_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32) * 3
    tokens = rng.integers(0, 11, size=(3, 7))
    got = np.asarray(jax.jit(scoring.token_logprobs)(jnp.asarray(logits), jnp.asarray(tokens)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np_logprobs(logits, tokens), atol=1e-5)
    assert np.all(got[:, 0] == 0)


def test_token_logprobs_bf16_logits_computed_in_float32():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 5, 9)) * 50, jnp.bfloat16)
    tokens = jnp.asarray(rng.integers(0, 9, size=(2, 5)))
    got = scoring.token_logprobs(logits, tokens)
    assert got.dtype == jnp.float32
    ref = np_logprobs(np.asarray(logits.astype(jnp.float32)), np.asarray(tokens))
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 1000])
def test_chunked_logprobs_agree_with_full(chunk_size):
    rng = np.random.default_rng(2)
    B, L, D, V = 3, 9, 8, 37
    h = jnp.asarray(rng.normal(size=(B, L, D)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(D, V)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, V, size=(B, L)))
    full = scoring.token_logprobs(jnp.einsum("bld,dv->blv", h, w, precision="highest"), tokens)
    f = jax.jit(lambda h, w, t: scoring.token_logprobs_chunked(h, w, t, chunk_size=chunk_size, precision="highest"))
    np.testing.assert_allclose(np.asarray(f(h, w, tokens)), np.asarray(full), atol=1e-5)


def test_chunked_logprobs_gradients_agree_with_full():
    rng = np.random.default_rng(3)
    B, L, D, V = 2, 6, 4, 13
    h = jnp.asarray(rng.normal(size=(B, L, D)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(D, V)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, V, size=(B, L)))

    def full(h, w):
        return jnp.sum(scoring.token_logprobs(jnp.einsum("bld,dv->blv", h, w, precision="highest"), tokens))

    def chunked(h, w):
        return jnp.sum(scoring.token_logprobs_chunked(h, w, tokens, chunk_size=4, precision="highest"))

    g_full = jax.grad(full, argnums=(0, 1))(h, w)
    g_chunk = jax.jit(jax.grad(chunked, argnums=(0, 1)))(h, w)
    for a, b in zip(g_full, g_chunk):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)


def test_chunked_logprobs_never_materialises_full_logits():
    """The compiled gradient's temporaries stay far below one float32 [B, L, V] buffer."""
    B, L, D, V = 4, 256, 16, 4096
    full_bytes = B * L * V * 4  # 16 MiB
    h = jax.ShapeDtypeStruct((B, L, D), jnp.float32)
    w = jax.ShapeDtypeStruct((D, V), jnp.float32)
    t = jax.ShapeDtypeStruct((B, L), jnp.int32)

    def loss(h, w, t):
        return jnp.sum(scoring.token_logprobs_chunked(h, w, t, chunk_size=64))

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(h, w, t).compile()
    mem = compiled.memory_analysis()
    if mem is None:
        pytest.skip("backend gives no memory analysis")
    assert mem.temp_size_in_bytes < full_bytes / 4, mem.temp_size_in_bytes


def test_chunked_logprobs_shape_error():
    with pytest.raises(ValueError, match="w_DxV"):
        scoring.token_logprobs_chunked(jnp.zeros((1, 3, 4)), jnp.zeros((5, 7)), jnp.zeros((1, 3), jnp.int32))


def np_step_rewards(logp, ref, step_ids, T, beta):
    B, L = logp.shape
    out = np.zeros((B, T))
    for b in range(B):
        for l in range(L):
            if 0 <= step_ids[b, l] < T:
                out[b, step_ids[b, l]] += logp[b, l] - ref[b, l]
    return beta * out


def _random_step_layout(rng, B, L, T):
    step_ids = np.full((B, L), -1)
    for b in range(B):
        prompt = rng.integers(1, 4)
        n_steps = rng.integers(0, T + 1)
        bounds = np.sort(rng.choice(np.arange(prompt + 1, L + 1), size=n_steps, replace=False))
        start = prompt
        for s, end in enumerate(bounds):
            step_ids[b, start:end] = s
            start = end
    return step_ids


def test_implicit_step_rewards_match_numpy_and_sum_to_outcome_reward():
    rng = np.random.default_rng(4)
    B, L, T, beta = 5, 20, 6, 0.05
    logp = rng.normal(size=(B, L)).astype(np.float32)
    ref = rng.normal(size=(B, L)).astype(np.float32)
    step_ids = _random_step_layout(rng, B, L, T)
    f = jax.jit(scoring.implicit_step_rewards, static_argnums=(3,))
    got = np.asarray(f(logp, ref, step_ids, T, beta))
    np.testing.assert_allclose(got, np_step_rewards(logp, ref, step_ids, T, beta), atol=1e-6)
    # property: step rewards sum to the outcome reward beta * sum over response tokens
    outcome_reward = beta * np.sum(np.where(step_ids >= 0, logp - ref, 0), axis=1)
    np.testing.assert_allclose(got.sum(1), outcome_reward, atol=1e-5)
    q = np.asarray(scoring.implicit_q_values(logp, ref, step_ids, T, beta))
    np.testing.assert_allclose(q, np.cumsum(got, axis=1), atol=1e-6)
    np.testing.assert_allclose(q[:, -1], outcome_reward, atol=1e-5)


def test_implicit_step_rewards_two_step_hand_example():
    # prompt token, step 0 = tokens 1-2, step 1 = token 3, padding token 4
    logp = jnp.array([[-9.0, -1.0, -2.0, -0.5, -7.0]])
    ref = jnp.array([[-1.0, -2.0, -2.0, -1.5, -1.0]])
    step_ids = jnp.array([[-1, 0, 0, 1, -1]])
    r = scoring.implicit_step_rewards(logp, ref, step_ids, 2, 0.5)
    # step 0: 0.5 * ((-1 + 2) + (-2 + 2)) = 0.5 ; step 1: 0.5 * (-0.5 + 1.5) = 0.5
    np.testing.assert_allclose(np.asarray(r), [[0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(scoring.implicit_q_values(logp, ref, step_ids, 2, 0.5)), [[0.5, 1.0]])


def np_aggregate(x, m, how, temperature=0.1):
    out = []
    for row, mask in zip(x.astype(np.float64), m):
        v = row[mask]
        if len(v) == 0:
            out.append(0.0)
        elif how == "min":
            out.append(v.min())
        elif how == "last":
            out.append(v[-1])
        elif how == "prod":
            out.append(np.prod(v))
        elif how == "mean":
            out.append(v.mean())
        elif how == "sum":
            out.append(v.sum())
        elif how == "softmin":
            z = -v / temperature
            w = np.exp(z - z.max())
            w /= w.sum()
            out.append(np.sum(w * v))
        elif how == "pure":  # PURE (Stop Summation): r = p(+) - p(-), w = softmax(-r / T), credit sum w r
            r = v - (1.0 - v)
            w = np.exp(-r / temperature - np.max(-r / temperature))
            w /= w.sum()
            out.append(np.sum(w * r))
    return np.array(out)


@pytest.mark.parametrize("how", scoring.AGGREGATIONS)
def test_aggregate_matches_numpy_on_ragged_masks(how):
    rng = np.random.default_rng(5)
    B, T = 7, 6
    x = rng.uniform(-1, 1, size=(B, T)).astype(np.float32)
    m = _ragged_mask(rng, B, T)
    m[2] = rng.random(T) < 0.5  # a non-prefix mask too
    got = np.asarray(jax.jit(scoring.aggregate, static_argnums=(2,))(x, m, how))
    np.testing.assert_allclose(got, np_aggregate(x, m, how), atol=1e-5)
    assert got[1] == 0.0  # fully masked row


def test_aggregate_hand_values_and_bad_name():
    x = jnp.array([[0.9, 0.2, 0.5, 7.0]])
    m = jnp.array([[True, True, True, False]])
    vals = {h: float(scoring.aggregate(x, m, h)[0]) for h in ("min", "last", "prod", "mean", "sum")}
    assert vals == pytest.approx({"min": 0.2, "last": 0.5, "prod": 0.09, "mean": 1.6 / 3, "sum": 1.6})
    with pytest.raises(ValueError, match="unknown aggregation"):
        scoring.aggregate(x, m, "max")


def test_softmin_tends_to_min_as_temperature_goes_to_zero():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, size=(4, 5)).astype(np.float32)
    m = np.ones((4, 5), bool)
    true_min = x.min(1)
    gaps = [
        np.max(np.abs(np.asarray(scoring.aggregate(x, m, "softmin", temperature=t)) - true_min))
        for t in (1.0, 0.1, 0.01, 1e-4)
    ]
    assert all(a >= b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-5
    # large temperature -> plain mean
    np.testing.assert_allclose(np.asarray(scoring.aggregate(x, m, "softmin", temperature=1e6)), x.mean(1), atol=1e-4)


def test_aggregate_stable_at_extreme_scores():
    x = jnp.array([[100.0, -100.0, 3.0], [-100.0, -100.0, -100.0]])
    m = jnp.array([[True, True, False], [False, False, False]])
    for how in scoring.AGGREGATIONS:
        f = jax.jit(lambda x: jnp.sum(scoring.aggregate(x, m, how, temperature=1e-3)))
        out, g = f(x), jax.jit(jax.grad(f))(x)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(g)), how
    assert float(scoring.aggregate(x, m, "softmin", temperature=1e-3)[0]) == pytest.approx(-100.0)


def test_first_error():
    p = jnp.array([[0.9, 0.4, 0.1], [0.9, 0.8, 0.7], [0.2, 0.9, 0.9], [0.9, 0.3, 0.1], [0.1, 0.1, 0.1]])
    m = jnp.array([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 0, 0]], bool)
    got = np.asarray(jax.jit(scoring.first_error)(p, m, 0.5))
    np.testing.assert_array_equal(got, [1, -1, 0, 2, -1])
    # numpy reference on random inputs
    rng = np.random.default_rng(7)
    p = rng.random((20, 8)).astype(np.float32)
    m = _ragged_mask(rng, 20, 8)
    ref = [next((t for t in range(8) if m[b, t] and p[b, t] < 0.3), -1) for b in range(20)]
    np.testing.assert_array_equal(np.asarray(scoring.first_error(p, m, 0.3)), ref)


def test_pav_search_score():
    q = jnp.array([[0.5, 0.25]])
    a = jnp.array([[0.1, -0.2]])
    np.testing.assert_allclose(np.asarray(jax.jit(scoring.pav_search_score)(q, a, 0.5)), [[0.55, 0.15]])


def test_gradients_match_finite_differences_float64():
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        h = jnp.asarray(rng.normal(size=(2, 5, 3)))
        w = jnp.asarray(rng.normal(size=(3, 7)))
        tokens = jnp.asarray(rng.integers(0, 7, size=(2, 5)))
        chunked = jax.jit(lambda h, w: scoring.token_logprobs_chunked(h, w, tokens, chunk_size=3))
        assert chunked(h, w).dtype == jnp.float64
        check_grads(chunked, (h, w), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)
        x = jnp.asarray(rng.uniform(-1, 1, size=(3, 4)))
        m = jnp.asarray(_ragged_mask(rng, 3, 4))
        softmin = jax.jit(lambda x: scoring.aggregate(x, m, "softmin", temperature=0.3))
        check_grads(softmin, (x,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)
        logp, ref = jnp.asarray(rng.normal(size=(2, 6))), jnp.asarray(rng.normal(size=(2, 6)))
        ids = jnp.array([[-1, 0, 0, 1, 1, -1], [-1, -1, 0, 1, 2, 2]])
        q = jax.jit(lambda a, b: scoring.implicit_q_values(a, b, ids, 3, 0.1))
        check_grads(q, (logp, ref), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


def test_pure_is_the_papers_min_form_and_softmin_at_half_its_temperature():
    """PURE: r = p(+) - p(-) = 2p - 1, w = softmax(-r / 0.1), credit sum w r. softmin on p ranks the
    same only at T = 0.05, where 2 * softmin(p) - 1 equals PURE's credit."""
    rng = np.random.default_rng(9)
    p = rng.random((16, 5)).astype(np.float32)
    m = np.ones_like(p, bool)
    pure = np.asarray(scoring.aggregate(p, m, "pure"))  # PURE's T = 0.1 is the default
    r = 2.0 * p.astype(np.float64) - 1.0
    w = np.exp(-r / 0.1 - (-r / 0.1).max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(pure, (w * r).sum(1), atol=1e-5)
    half = np.asarray(scoring.aggregate(p, m, "softmin", temperature=0.05))
    np.testing.assert_allclose(pure, 2 * half - 1, atol=1e-5)
    assert np.all(pure >= -1) and np.all(pure <= 1)
