"""prm_jax.losses against numpy references, hand-computed two-step examples, finite differences."""

import math

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from prm_jax import losses, scoring


def _np_log_sigmoid(z):
    z = np.asarray(z, np.float64)
    return np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z))))


def np_bce(z, y, m, w=None):
    w = m.astype(np.float64) if w is None else m * w
    per = -(y * _np_log_sigmoid(z) + (1 - y) * _np_log_sigmoid(-z))
    return float(np.sum(np.where(m, per, 0) * w) / np.sum(w)) if w.sum() > 0 else 0.0


def _ragged(rng, B, T):
    lengths = rng.integers(0, T + 1, size=B)
    lengths[0] = T
    lengths[1] = 0
    return np.arange(T)[None, :] < lengths[:, None]


def test_bce_step_loss_matches_numpy_with_soft_labels_and_weights():
    rng = np.random.default_rng(0)
    B, T = 6, 5
    z = rng.normal(size=(B, T)).astype(np.float32) * 4
    y = rng.random((B, T)).astype(np.float32)
    m = _ragged(rng, B, T)
    w = rng.random((B, T)).astype(np.float32)
    f = jax.jit(losses.bce_step_loss)
    loss, metrics = f(z, y, m)
    assert loss.dtype == jnp.float32
    assert float(loss) == pytest.approx(np_bce(z, y, m), rel=1e-5)
    assert float(metrics["num_steps"]) == m.sum()
    acc = np.mean(((z > 0) == (y >= 0.5))[m])
    assert float(metrics["step_acc"]) == pytest.approx(acc)
    loss_w, _ = f(z, y, m, w)
    assert float(loss_w) == pytest.approx(np_bce(z, y, m, w), rel=1e-5)


def test_bce_two_step_hand_example():
    # step 0: logit 0, label 1 -> log 2; step 1: logit ln 3 (p = 0.75), label 0 -> -log(0.25) = log 4
    loss, metrics = losses.bce_step_loss(
        jnp.array([[0.0, math.log(3.0)]]), jnp.array([[1.0, 0.0]]), jnp.array([[True, True]])
    )
    assert float(loss) == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    assert float(metrics["step_acc"]) == 0.0  # logit 0 predicts negative; p=0.75 predicts positive


def test_soft_label_loss_is_lowest_at_the_label():
    y = jnp.full((1, 1), 0.7)
    m = jnp.ones((1, 1), bool)

    def at(p):
        return float(losses.bce_step_loss(jnp.array([[math.log(p / (1 - p))]]), y, m)[0])

    assert at(0.7) < at(0.5) < at(1e-6)
    assert at(0.7) < at(1 - 1e-6)
    assert at(0.7) < at(0.69) and at(0.7) < at(0.71)
    # the label is not cast: 0.7 differs from 1
    assert at(0.7) != pytest.approx(
        float(losses.bce_step_loss(jnp.array([[math.log(0.7 / 0.3)]]), jnp.ones((1, 1)), m)[0])
    )


def test_orm_mask_keeps_last_step_only():
    m = jnp.array([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0]], bool)
    np.testing.assert_array_equal(np.asarray(losses.orm_mask(m)), [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]])


def np_seq_ratio(logp, ref, m):
    return np.sum(np.where(m, logp.astype(np.float64) - ref, 0), axis=1)


def test_implicit_ce_loss_matches_numpy():
    rng = np.random.default_rng(1)
    B, L, beta = 5, 12, 0.05
    logp, ref = (rng.normal(size=(B, L)).astype(np.float32) * 3 for _ in range(2))
    m = _ragged(rng, B, L)
    outcome = rng.random(B).astype(np.float32)
    loss, metrics = jax.jit(losses.implicit_ce_loss)(logp, ref, m, outcome, beta)
    r = beta * np_seq_ratio(logp, ref, m)
    valid = m.any(1)
    per = -(outcome * _np_log_sigmoid(r) + (1 - outcome) * _np_log_sigmoid(-r))
    assert float(loss) == pytest.approx(per[valid].mean(), rel=1e-5)
    assert float(metrics["num_examples"]) == valid.sum()
    assert float(metrics["outcome_acc"]) == pytest.approx(np.mean(((r > 0) == (outcome >= 0.5))[valid]))


def test_implicit_ce_two_step_hand_example():
    # log-ratios 2 and 2 over two response tokens, beta 0.25 -> r = 1; label 1 -> -log sigmoid(1)
    logp = jnp.array([[-5.0, -1.0, -1.0]])
    ref = jnp.array([[-1.0, -3.0, -3.0]])
    m = jnp.array([[False, True, True]])
    loss, metrics = losses.implicit_ce_loss(logp, ref, m, jnp.array([1.0]), 0.25)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert float(metrics["outcome_acc"]) == 1.0
    loss0, _ = losses.implicit_ce_loss(logp, ref, m, jnp.array([0.0]), 0.25)
    assert float(loss0) == pytest.approx(math.log1p(math.exp(1.0)), rel=1e-6)


def test_implicit_dpo_loss_matches_numpy_and_hand_example():
    rng = np.random.default_rng(2)
    B, L, beta = 4, 9, 0.1
    arrs = [rng.normal(size=(B, L)).astype(np.float32) * 3 for _ in range(4)]
    mc, mr = _ragged(rng, B, L), _ragged(rng, B, L)[::-1]
    loss, metrics = jax.jit(losses.implicit_dpo_loss)(arrs[0], arrs[1], mc, arrs[2], arrs[3], mr, beta)
    margin = beta * (np_seq_ratio(arrs[0], arrs[1], mc) - np_seq_ratio(arrs[2], arrs[3], mr))
    valid = mc.any(1) & mr.any(1)
    assert float(loss) == pytest.approx(-_np_log_sigmoid(margin)[valid].mean(), rel=1e-5)
    assert float(metrics["num_pairs"]) == valid.sum()
    # hand: chosen ratio sum 3, rejected -1, beta 0.5 -> margin 2
    one = jnp.ones((1, 2), bool)
    loss, metrics = losses.implicit_dpo_loss(
        jnp.array([[-1.0, -1.0]]),
        jnp.array([[-2.5, -2.5]]),
        one,
        jnp.array([[-2.0, -2.0]]),
        jnp.array([[-1.5, -1.5]]),
        one,
        0.5,
    )
    assert float(loss) == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    assert float(metrics["margin"]) == pytest.approx(2.0)
    assert float(metrics["pair_acc"]) == 1.0


def test_pav_loss_bce_and_mse_adv():
    z = jnp.array([[0.0, math.log(3.0), 5.0]])
    q = jnp.array([[0.5, 0.25, 0.9]])
    m = jnp.array([[True, True, False]])
    loss, _ = losses.pav_loss(z, q, m)
    # step 0: p = 0.5, q = 0.5 -> log 2; step 1: p = 0.75, q = 0.25 -> -(0.25 log .75 + .75 log .25)
    want = (math.log(2) - (0.25 * math.log(0.75) + 0.75 * math.log(0.25))) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)
    # mse_adv: targets A = (0.5 - 0.4, 0.25 - 0.5) = (0.1, -0.25); predictions are raw outputs
    pred = jnp.array([[0.3, -0.25, 9.0]])
    loss, metrics = jax.jit(losses.pav_loss, static_argnames="mode")(pred, q, m, jnp.array([0.4]), mode="mse_adv")
    assert float(loss) == pytest.approx((0.2**2 + 0.0) / 2, rel=1e-5)
    assert float(metrics["adv_sign_acc"]) == 1.0
    with pytest.raises(ValueError, match="v0"):
        losses.pav_loss(pred, q, m, mode="mse_adv")
    with pytest.raises(ValueError, match="mode"):
        losses.pav_loss(pred, q, m, mode="hinge")


def test_sft_loss_from_logits_and_logp():
    rng = np.random.default_rng(3)
    B, L, V = 3, 6, 7
    logits = jnp.asarray(rng.normal(size=(B, L, V)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, V, size=(B, L)))
    m = jnp.asarray(_ragged(rng, B, L))
    loss, metrics = jax.jit(losses.sft_loss)(logits, tokens, m)
    logp = np.asarray(scoring.token_logprobs(logits, tokens))
    mm = np.asarray(m).copy()
    mm[:, 0] = False
    assert float(loss) == pytest.approx(-logp[mm].mean(), rel=1e-5)
    assert float(metrics["num_tokens"]) == mm.sum()
    pred = np.argmax(np.asarray(logits)[:, :-1], -1) == np.asarray(tokens)[:, 1:]
    assert float(metrics["token_acc"]) == pytest.approx(pred[mm[:, 1:]].mean())
    loss2, _ = losses.sft_loss(jnp.asarray(logp), tokens, m)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        losses.sft_loss(jnp.zeros((2,)), tokens, m)


def _all_losses(z_BxT, lp_BxL, y, m_T, m_L, outcome, q, v0):
    """Every loss on the same inputs; used for the NaN/extreme and finite-difference checks."""
    return {
        "bce": losses.bce_step_loss(z_BxT, y, m_T)[0],
        "orm": losses.bce_step_loss(z_BxT, y, losses.orm_mask(m_T))[0],
        "implicit_ce": losses.implicit_ce_loss(lp_BxL, 0.5 * lp_BxL, m_L, outcome, 0.5)[0],
        "implicit_dpo": losses.implicit_dpo_loss(lp_BxL, 0.3 * lp_BxL, m_L, -lp_BxL, 0.1 * lp_BxL, m_L, 0.5)[0],
        "pav_bce": losses.pav_loss(z_BxT, q, m_T)[0],
        "pav_mse_adv": losses.pav_loss(z_BxT, q, m_T, v0, mode="mse_adv")[0],
    }


@pytest.mark.parametrize("scale", [100.0, -100.0, 1e4])
def test_no_nan_or_inf_at_extreme_logits_and_fully_masked_rows(scale):
    B, T, L = 3, 4, 6
    z = jnp.full((B, T), scale).at[:, 1].set(-scale)
    lp = jnp.full((B, L), -abs(scale)).at[:, 2].set(scale)
    y = jnp.array([[1.0, 0.0, 0.7, 0.0]] * B)
    m_T = jnp.array([[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    m_L = jnp.array([[0, 1, 1, 1, 0, 0], [0] * 6, [0, 0, 0, 0, 0, 1]], bool)
    outcome = jnp.array([1.0, 0.0, 0.3])
    q = jnp.array([[0.9, 0.1, 0.5, 0.0]] * B)
    v0 = jnp.array([0.5, 0.5, 0.5])

    @jax.jit
    def run(z, lp):
        return _all_losses(z, lp, y, m_T, m_L, outcome, q, v0)

    vals = run(z, lp)
    grads = jax.jit(jax.grad(lambda z, lp: sum(run(z, lp).values()), argnums=(0, 1)))(z, lp)
    for k, v in vals.items():
        assert np.isfinite(float(v)), k
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    # the fully masked row gets no gradient
    assert np.all(np.asarray(grads[0])[1] == 0) and np.all(np.asarray(grads[1])[1] == 0)
    # NaN in masked slots does not leak
    z_nan = z.at[0, 3].set(jnp.nan).at[1].set(jnp.nan)
    lp_nan = lp.at[1].set(jnp.nan)
    for k, v in run(z_nan, lp_nan).items():
        if k != "implicit_dpo":  # dpo pairs row b with itself; row 1 is masked on both sides
            assert np.isfinite(float(v)), k


def test_all_masked_batch_gives_zero_loss():
    z = jnp.ones((2, 3))
    lp = jnp.ones((2, 4))
    zero_T, zero_L = jnp.zeros((2, 3), bool), jnp.zeros((2, 4), bool)
    vals = jax.jit(_all_losses)(z, lp, jnp.ones((2, 3)), zero_T, zero_L, jnp.ones(2), jnp.ones((2, 3)), jnp.ones(2))
    for k, v in vals.items():
        assert float(v) == 0.0, k


def test_gradients_match_finite_differences_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        B, T, L = 3, 4, 6
        z = jnp.asarray(rng.normal(size=(B, T)) * 2, jnp.float64)
        lp = jnp.asarray(-rng.random((B, L)) * 3, jnp.float64)
        y = jnp.asarray(rng.random((B, T)), jnp.float64)
        m_T = jnp.asarray(_ragged(rng, B, T))
        m_L = jnp.asarray(_ragged(rng, B, L))
        outcome = jnp.asarray([1.0, 0.0, 0.6])
        q = jnp.asarray(rng.random((B, T)))
        v0 = jnp.asarray(rng.random(B))
        names = list(_all_losses(z, lp, y, m_T, m_L, outcome, q, v0))

        def f(z, lp):  # every loss stacked: [num_losses]
            out = _all_losses(z, lp, y, m_T, m_L, outcome, q, v0)
            return jnp.stack([out[k] for k in names])

        assert jax.jit(f)(z, lp).dtype == jnp.float64
        jac = jax.jit(jax.jacrev(f, argnums=(0, 1)))(z, lp)
        fv = jax.jit(jax.vmap(f))
        eps = 1e-6
        for arg_i, x in enumerate((z, lp)):
            n = x.size
            dx = (eps * jnp.eye(n, dtype=x.dtype)).reshape((n,) + x.shape)
            other = jnp.broadcast_to((lp, z)[arg_i], (n,) + (lp, z)[arg_i].shape)
            args_p = (x[None] + dx, other) if arg_i == 0 else (other, x[None] + dx)
            args_m = (x[None] - dx, other) if arg_i == 0 else (other, x[None] - dx)
            num = (fv(*args_p) - fv(*args_m)) / (2 * eps)  # [n, num_losses]
            for k, name in enumerate(names):
                np.testing.assert_allclose(
                    np.asarray(jac[arg_i][k]),
                    np.asarray(num[:, k]).reshape(x.shape),
                    atol=1e-7,
                    rtol=1e-6,
                    err_msg=name,
                )


def test_policy_gradient_loss_matches_numpy_ppo_clip_and_k3_kl():
    import jax
    import numpy as np

    from prm_jax import losses

    rng = np.random.default_rng(0)
    B, L = 3, 6
    logp = np.log(rng.uniform(0.05, 0.95, (B, L)))
    old = logp + rng.normal(0, 0.3, (B, L))
    ref = logp + rng.normal(0, 0.5, (B, L))
    adv = rng.normal(size=(B, L))
    mask = np.zeros((B, L), bool)
    mask[:, 2:] = True
    mask[2, 5] = False
    loss, m = losses.policy_gradient_loss(logp, old, adv, mask, clip_eps=0.2, ref_logp_BxL=ref, kl_coef=0.1)
    r = np.exp(logp - old)
    surr = np.minimum(r * adv, np.clip(r, 0.8, 1.2) * adv)
    d = ref - logp
    want_pg, want_kl = -surr[mask].mean(), (np.exp(d) - d - 1)[mask].mean()
    assert float(m["pg_loss"]) == pytest.approx(want_pg, rel=1e-5)
    assert float(m["kl"]) == pytest.approx(want_kl, rel=1e-5)
    assert float(loss) == pytest.approx(want_pg + 0.1 * want_kl, rel=1e-5)
    assert float(m["clip_frac"]) == pytest.approx((np.abs(r - 1) > 0.2)[mask].mean())
    # on-policy (ratio 1) the gradient is the REINFORCE one: -A * d logp, per token, averaged
    g = jax.grad(lambda lp: losses.policy_gradient_loss(lp, logp, adv, mask)[0])(logp)
    assert np.asarray(g) == pytest.approx(np.where(mask, -adv / mask.sum(), 0.0), abs=1e-6)
