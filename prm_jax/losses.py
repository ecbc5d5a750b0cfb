"""The PRM training objectives as pure functions returning (loss, metrics) in float32.

- `bce_step_loss`: per-step binary cross-entropy (Math-Shepherd, PRM800K, Qwen2.5-Math-PRM); an ORM
  is the same loss under `orm_mask`.
- `implicit_ce_loss` / `implicit_dpo_loss`: the implicit PRM, r = beta * sum of log pi / pi_ref over
  response tokens, trained on outcome labels (Yuan et al., "Free Process Rewards"; PRIME).
- `pav_loss`: the process advantage verifier (Setlur et al.): BCE of predicted Q on soft MC targets,
  or MSE on the advantages A_t = Q_t - Q_{t-1}.
- `sft_loss`: token cross-entropy on response tokens (the policy for the demo).

Every loss uses log-sigmoid forms, sanitises masked entries before any non-linearity (so that a
NaN or inf in a masked slot cannot leak into the loss or its gradient), and gives 0 for an
all-masked batch; a fully masked row contributes nothing. float64 inputs (under x64) stay float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prm_jax import scoring, targets

PAV_MODES = ("bce", "mse_adv")


def _bce_with_logits(z, y):
    """Returns the elementwise -(y log sigmoid(z) + (1 - y) log sigmoid(-z)), stable at any |z|."""
    return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def _masked_mean(x, w):
    """Returns sum(w * x) / sum(w), and 0 when sum(w) is 0."""
    total = jnp.sum(w)
    return jnp.sum(w * x) / jnp.maximum(total, 1e-12) * (total > 0)


def bce_step_loss(step_logits_BxT, step_labels_BxT, step_mask_BxT, weights=None):
    """Returns (loss, metrics): the mean binary cross-entropy over unmasked steps.

    step_labels may be soft (a 0.7 label stays 0.7). weights (broadcastable to [B, T]) make it a
    weighted mean. metrics: loss, step_acc (sign of the logit against label >= 0.5), num_steps,
    pos_frac (labels >= 0.5), mean_prob.
    """
    m = jnp.asarray(step_mask_BxT, bool)
    z = jnp.where(m, scoring.as_float(step_logits_BxT), 0.0)
    y = jnp.where(m, scoring.as_float(step_labels_BxT), 0.0)
    w = m.astype(z.dtype)
    if weights is not None:
        w = w * jnp.broadcast_to(scoring.as_float(weights), m.shape)
    loss = _masked_mean(_bce_with_logits(z, y), w)
    mf = m.astype(jnp.float32)
    correct = ((z > 0) == (y >= 0.5)).astype(jnp.float32)
    metrics = {
        "loss": loss,
        "step_acc": _masked_mean(correct, mf),
        "num_steps": jnp.sum(mf),
        "pos_frac": _masked_mean((y >= 0.5).astype(jnp.float32), mf),
        "mean_prob": _masked_mean(jax.nn.sigmoid(z), mf),
    }
    return loss, metrics


def orm_mask(step_exists_BxT):
    """Returns a bool mask [B, T] keeping only the last True entry of each row (outcome RM).

    Pass the steps that exist (`step_pos >= 0`), not the label mask: an outcome-only record has no
    step labels, and a ProcessBench-style record leaves its last steps unlabelled.
    """
    m = jnp.asarray(step_exists_BxT, bool)
    T = m.shape[-1]
    last = jnp.max(jnp.where(m, jnp.arange(T), -1), axis=-1, keepdims=True)
    return m & (jnp.arange(T) == last)


def sequence_log_ratio(logp_BxL, ref_logp_BxL, response_mask_BxL):
    """Returns the float32 [B] sum over response tokens of (logp - ref_logp)."""
    m = jnp.asarray(response_mask_BxL, bool)
    d = scoring.as_float(logp_BxL) - scoring.as_float(ref_logp_BxL)
    return jnp.sum(jnp.where(m, d, 0.0), axis=-1)


def implicit_ce_loss(logp_BxL, ref_logp_BxL, response_mask_BxL, outcome_B, beta: float, outcome_mask_B=None):
    """Returns (loss, metrics): mean BCE of sigmoid(r) against the outcome, r = beta * sum log-ratio.

    The sum runs over `response_mask` (the objective passes the step tokens). Rows without such
    tokens, or whose outcome_mask is False (unknown or truncated outcome), contribute nothing. metrics: loss, outcome_acc (r > 0 against
    outcome >= 0.5), reward_mean, reward_correct / reward_wrong (mean r over rows with outcome
    >= 0.5 / < 0.5), num_examples.
    """
    valid = jnp.any(jnp.asarray(response_mask_BxL, bool), axis=-1)
    if outcome_mask_B is not None:
        valid = valid & jnp.asarray(outcome_mask_B, bool)
    r = beta * sequence_log_ratio(logp_BxL, ref_logp_BxL, response_mask_BxL)
    r = jnp.where(valid, r, 0.0)
    y = jnp.where(valid, scoring.as_float(outcome_B), 0.0)
    vf = valid.astype(jnp.float32)
    loss = _masked_mean(_bce_with_logits(r, y), vf)
    pos = vf * (y >= 0.5)
    neg = vf * (y < 0.5)
    metrics = {
        "loss": loss,
        "outcome_acc": _masked_mean(((r > 0) == (y >= 0.5)).astype(jnp.float32), vf),
        "reward_mean": _masked_mean(r, vf),
        "reward_correct": _masked_mean(r, pos),
        "reward_wrong": _masked_mean(r, neg),
        "num_examples": jnp.sum(vf),
    }
    return loss, metrics


def implicit_dpo_loss(
    logp_c_BxL, ref_logp_c_BxL, mask_c_BxL, logp_r_BxL, ref_logp_r_BxL, mask_r_BxL, beta: float, pair_mask_B=None
):
    """Returns (loss, metrics): mean of -log sigmoid(r_chosen - r_rejected), r = beta * sum log-ratio.

    A pair counts only if both sides have response tokens and pair_mask_B (both outcomes known and
    untruncated) holds. metrics: loss, pair_acc (r_c > r_r),
    margin, reward_chosen, reward_rejected, num_pairs.
    """
    valid = jnp.any(jnp.asarray(mask_c_BxL, bool), axis=-1) & jnp.any(jnp.asarray(mask_r_BxL, bool), axis=-1)
    if pair_mask_B is not None:
        valid = valid & jnp.asarray(pair_mask_B, bool)
    vf = valid.astype(jnp.float32)
    r_c = jnp.where(valid, beta * sequence_log_ratio(logp_c_BxL, ref_logp_c_BxL, mask_c_BxL), 0.0)
    r_r = jnp.where(valid, beta * sequence_log_ratio(logp_r_BxL, ref_logp_r_BxL, mask_r_BxL), 0.0)
    margin = r_c - r_r
    loss = _masked_mean(-jax.nn.log_sigmoid(margin), vf)
    metrics = {
        "loss": loss,
        "pair_acc": _masked_mean((margin > 0).astype(jnp.float32), vf),
        "margin": _masked_mean(margin, vf),
        "reward_chosen": _masked_mean(r_c, vf),
        "reward_rejected": _masked_mean(r_r, vf),
        "num_pairs": jnp.sum(vf),
    }
    return loss, metrics


def pav_loss(step_logits_BxT, q_targets_BxT, step_mask_BxT, v0_B=None, mode: str = "bce"):
    """Returns (loss, metrics) for a process advantage verifier.

    mode='bce' (default, as in the paper): the head's logit at each step predicts the prover's Q;
    BCE against the soft Monte-Carlo Q. A^mu at search time is the difference of consecutive
    predictions (see `targets.pav_advantages`).
    mode='mse_adv': the head's raw output at each step regresses A_t = Q_t - Q_{t-1} (Q_{-1} = v0)
    directly with a mean squared error over unmasked steps; needs v0_B.
    """
    if mode == "bce":
        loss, metrics = bce_step_loss(step_logits_BxT, q_targets_BxT, step_mask_BxT)
        m = jnp.asarray(step_mask_BxT, bool)
        err = jnp.abs(jax.nn.sigmoid(jnp.where(m, step_logits_BxT, 0.0)) - jnp.where(m, q_targets_BxT, 0.0))
        metrics["q_mae"] = _masked_mean(err, m.astype(jnp.float32))
        return loss, metrics
    if mode == "mse_adv":
        if v0_B is None:
            raise ValueError(
                "pav_loss(mode='mse_adv') needs v0_B, the prover's success probability from the bare question"
            )
        m = jnp.asarray(step_mask_BxT, bool)
        mf = m.astype(jnp.float32)
        a_target = targets.pav_advantages(jnp.where(m, q_targets_BxT, 0.0), v0_B, m)
        a_pred = jnp.where(m, scoring.as_float(step_logits_BxT), 0.0)
        loss = _masked_mean(jnp.square(a_pred - a_target), mf)
        sign_ok = ((a_pred > 0) == (a_target > 0)).astype(jnp.float32)
        metrics = {"loss": loss, "adv_sign_acc": _masked_mean(sign_ok, mf), "num_steps": jnp.sum(mf)}
        return loss, metrics
    raise ValueError(f"unknown pav_loss mode {mode!r}; expected one of {PAV_MODES}")


def sft_loss(logits_or_logp, tokens_BxL, response_mask_BxL):
    """Returns (loss, metrics): mean negative log-likelihood of the response tokens.

    logits_or_logp: logits [B, L, V] (log-probs are taken here) or token log-probs [B, L] from
    `scoring.token_logprobs` / `token_logprobs_chunked` (tokens_BxL is then unused). Position 0 has
    no prediction and never counts. metrics: loss, num_tokens, and token_acc when logits are given.
    """
    x = jnp.asarray(logits_or_logp)
    if x.ndim == 3:
        logp = scoring.token_logprobs(x, tokens_BxL)
    elif x.ndim == 2:
        logp = scoring.as_float(x)
    else:
        raise ValueError(f"sft_loss expects logits [B, L, V] or log-probs [B, L], got shape {x.shape}")
    m = jnp.asarray(response_mask_BxL, bool).at[:, 0].set(False)
    mf = m.astype(jnp.float32)
    loss = _masked_mean(-jnp.where(m, logp, 0.0), mf)
    metrics = {"loss": loss, "num_tokens": jnp.sum(mf)}
    if x.ndim == 3:
        pred = jnp.argmax(x[:, :-1], axis=-1)
        hit = jnp.pad(pred == tokens_BxL[:, 1:], ((0, 0), (1, 0))).astype(jnp.float32)
        metrics["token_acc"] = _masked_mean(hit, mf)
    return loss, metrics


def policy_gradient_loss(
    logp_BxL,
    old_logp_BxL,
    advantages_BxL,
    response_mask_BxL,
    *,
    clip_eps: float = 0.2,
    ref_logp_BxL=None,
    kl_coef: float = 0.0,
):
    """Returns (loss, metrics): PPO's clipped surrogate over the response tokens, plus kl_coef times
    the k3 estimate of KL(pi || pi_ref) (exp(d) - d - 1 with d = log pi_ref - log pi).

    ratio_t = exp(logp_t - old_logp_t); the token loss is -min(ratio_t * A_t, clip(ratio_t, 1 - eps,
    1 + eps) * A_t), averaged over response tokens (position 0 never counts). metrics: loss, pg_loss,
    kl, clip_frac (tokens whose ratio left the clip range), ratio (mean), num_tokens.
    """
    logp = scoring.as_float(logp_BxL)
    m = jnp.asarray(response_mask_BxL, bool).at[:, 0].set(False)
    mf = m.astype(jnp.float32)
    adv = jnp.asarray(advantages_BxL, jnp.float32)
    ratio = jnp.exp(jnp.where(m, logp - jnp.asarray(old_logp_BxL, jnp.float32), 0.0))
    surr = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    pg = _masked_mean(-surr, mf)
    metrics = {
        "pg_loss": pg,
        "ratio": _masked_mean(ratio, mf),
        "clip_frac": _masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mf),
        "num_tokens": jnp.sum(mf),
    }
    loss = pg
    if ref_logp_BxL is not None:
        d = jnp.where(m, jnp.asarray(ref_logp_BxL, jnp.float32) - logp, 0.0)
        kl = _masked_mean(jnp.exp(d) - d - 1.0, mf)
        metrics["kl"] = kl
        loss = loss + kl_coef * kl
    metrics["loss"] = loss
    return loss, metrics
