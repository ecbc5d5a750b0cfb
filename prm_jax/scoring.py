"""Per-step scores from per-token model outputs, and how step scores become decisions.

Layout of steps (see DESIGN.md): `step_ids` [B, L] gives the step each response token belongs to
(-1 elsewhere), `step_pos` [B, T] the token index of the marker closing step t (-1 for padding), and
`step_mask` [B, T] which steps count. Everything here is pure, jit-able and returns float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

AGGREGATIONS = ("min", "last", "prod", "mean", "sum", "softmin", "pure")


def as_float(x) -> jax.Array:
    """Returns x as an array of at least float32 precision (bf16 -> f32, f64 stays f64 under x64)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def gather_steps(x_BxL: jax.Array, step_pos_BxT: jax.Array) -> jax.Array:
    """Returns x_BxT: the per-token values read at each step's marker; 0 where step_pos is -1."""
    valid = step_pos_BxT >= 0
    idx = jnp.where(valid, step_pos_BxT, 0).astype(jnp.int32)
    out = jnp.take_along_axis(x_BxL, idx, axis=1)
    return jnp.where(valid, out, jnp.zeros((), out.dtype))


def token_logprobs(logits_BxLxV: jax.Array, tokens_BxL: jax.Array) -> jax.Array:
    """Returns logp_BxL (float32): entry t is log p(tokens[t] | tokens[<t]); entry 0 is 0.

    The logits at position t predict token t+1, so the log-softmax is taken over positions 0..L-2.
    """
    logits = as_float(logits_BxLxV[:, :-1])
    targets = tokens_BxL[:, 1:].astype(jnp.int32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logp = picked - lse
    return jnp.pad(logp, ((0, 0), (1, 0)))


def _chunk_logprobs(h_BxSxD, w_DxV, targets_BxS, precision):
    """Returns log p(target | h) for one chunk of positions, [B, S], in at least float32."""
    out_dtype = jnp.promote_types(jnp.result_type(h_BxSxD, w_DxV), jnp.float32)
    logits_BxSxV = jnp.einsum("bsd,dv->bsv", h_BxSxD, w_DxV, precision=precision, preferred_element_type=out_dtype)
    lse = jax.nn.logsumexp(logits_BxSxV, axis=-1)
    picked = jnp.take_along_axis(logits_BxSxV, targets_BxS[..., None], axis=-1)[..., 0]
    return picked - lse


def token_logprobs_chunked(
    hidden_BxLxD: jax.Array,
    w_DxV: jax.Array,
    tokens_BxL: jax.Array,
    *,
    chunk_size: int = 1024,
    precision=None,
) -> jax.Array:
    """Returns logp_BxL (float32) like `token_logprobs(hidden @ w, tokens)`, never holding [B, L, V].

    The L-1 predicting positions are cut into chunks of S = max(1, chunk_size // B) positions (about
    chunk_size tokens over the batch) and mapped over with `lax.map`; the batch axis stays whole, so a
    batch-sharded input stays sharded. The chunk body is under `jax.checkpoint`, so under `jax.grad`
    only one chunk's [B, S, V] logits live at a time (they are recomputed in the backward pass):
    peak extra memory about B * S * V * 4 bytes instead of B * L * V * 4.
    """
    B, L, D = hidden_BxLxD.shape
    if w_DxV.shape[0] != D:
        raise ValueError(f"w_DxV has shape {w_DxV.shape}, expected ({D}, V) to match hidden_BxLxD {hidden_BxLxD.shape}")
    if L < 2:
        return jnp.zeros((B, L), as_float(hidden_BxLxD[:, :0, 0]).dtype)
    n = L - 1
    S = max(1, min(int(chunk_size) // max(B, 1), n))
    K = -(-n // S)
    pad = K * S - n
    h_KxBxSxD = jnp.pad(hidden_BxLxD[:, :-1], ((0, 0), (0, pad), (0, 0))).reshape(B, K, S, D).swapaxes(0, 1)
    t_KxBxS = jnp.pad(tokens_BxL[:, 1:].astype(jnp.int32), ((0, 0), (0, pad))).reshape(B, K, S).swapaxes(0, 1)
    body = jax.checkpoint(functools.partial(_chunk_logprobs, precision=precision))
    logp_KxBxS = jax.lax.map(lambda args: body(args[0], w_DxV, args[1]), (h_KxBxSxD, t_KxBxS))
    logp = logp_KxBxS.swapaxes(0, 1).reshape(B, K * S)[:, :n]
    return jnp.pad(logp, ((0, 0), (1, 0)))


def implicit_step_rewards(
    logp_BxL: jax.Array, ref_logp_BxL: jax.Array, step_ids_BxL: jax.Array, num_steps: int, beta: float
) -> jax.Array:
    """Returns r_BxT (float32): beta * sum over the tokens of step t of (logp - ref_logp).

    Tokens with step_ids -1 (prompt, padding) and step ids >= num_steps are not counted.
    """
    B = logp_BxL.shape[0]
    ratio = as_float(logp_BxL) - as_float(ref_logp_BxL)
    ids = jnp.where(step_ids_BxL < 0, num_steps, step_ids_BxL).astype(jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(B)[:, None], ids.shape)
    out = jnp.zeros((B, num_steps), ratio.dtype).at[rows, ids].add(ratio, mode="drop")
    return beta * out


def step_min_logprobs(logp_BxL: jax.Array, step_ids_BxL: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """Returns (m_BxT, prefix_m_BxT): the least log-prob of step t's tokens, and its running minimum
    over steps 0..t (float32; 0 for a step with no tokens, so padding steps read 0)."""
    B = logp_BxL.shape[0]
    ids = jnp.where(step_ids_BxL < 0, num_steps, step_ids_BxL).astype(jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(B)[:, None], ids.shape)
    m = (
        jnp.full((B, num_steps), jnp.inf, jnp.float32)
        .at[rows, ids]
        .min(as_float(logp_BxL).astype(jnp.float32), mode="drop")
    )
    m = jnp.where(jnp.isinf(m), 0.0, m)
    return m, jax.lax.cummin(m, axis=1)


def implicit_q_values(
    logp_BxL: jax.Array, ref_logp_BxL: jax.Array, step_ids_BxL: jax.Array, num_steps: int, beta: float
) -> jax.Array:
    """Returns q_BxT (float32): beta * the log-ratio summed over all response tokens up to step t's end."""
    return jnp.cumsum(implicit_step_rewards(logp_BxL, ref_logp_BxL, step_ids_BxL, num_steps, beta), axis=1)


def aggregate(
    step_scores_BxT: jax.Array,
    step_mask_BxT: jax.Array,
    how: str,
    temperature: float = 0.1,
    empty_value: float = 0.0,
) -> jax.Array:
    """Returns score_B (float32): one solution score from its unmasked step scores.

    how: `min`, `last` (the last unmasked step), `prod`, `mean`, `sum`, `softmin` (weights
    w = softmax(-x / temperature) over unmasked steps, score = sum w * x; tends to `min` as
    temperature -> 0), or `pure`: PURE's min-form credit ("Stop Summation") on step probabilities p,
    r = p(+) - p(-) = 2p - 1, w = softmax(-r / temperature) with PURE's temperature 0.1, score =
    sum w * r in [-1, 1]. Since -r / T = -p / (T / 2) + const, pure(p, T) = 2 * softmin(p, T / 2) - 1:
    softmin on probabilities ranks like PURE only at half PURE's temperature (0.05, not 0.1).
    Rows without any unmasked step give `empty_value`.
    """
    x = as_float(step_scores_BxT)
    if how == "pure":
        x, how = 2.0 * x - 1.0, "softmin"
    m = step_mask_BxT.astype(bool)
    has_any = jnp.any(m, axis=1)
    if how == "min":
        out = jnp.min(jnp.where(m, x, jnp.inf), axis=1)
    elif how == "last":
        T = x.shape[1]
        last = jnp.max(jnp.where(m, jnp.arange(T)[None, :], -1), axis=1)
        out = jnp.take_along_axis(x, jnp.maximum(last, 0)[:, None], axis=1)[:, 0]
    elif how == "prod":
        out = jnp.prod(jnp.where(m, x, 1.0), axis=1)
    elif how == "sum":
        out = jnp.sum(jnp.where(m, x, 0.0), axis=1)
    elif how == "mean":
        out = jnp.sum(jnp.where(m, x, 0.0), axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
    elif how == "softmin":
        if temperature <= 0:
            raise ValueError(f"softmin needs temperature > 0, got {temperature}")
        xs = jnp.where(m, x, 0.0)
        z = jnp.where(m, -xs / temperature, -jnp.inf)
        z_max = jax.lax.stop_gradient(jnp.max(z, axis=1, keepdims=True))
        z_max = jnp.where(jnp.isfinite(z_max), z_max, 0.0)
        e = jnp.where(m, jnp.exp(jnp.where(m, z - z_max, 0.0)), 0.0)
        w = e / jnp.maximum(jnp.sum(e, axis=1, keepdims=True), 1e-30)
        out = jnp.sum(w * xs, axis=1)
    else:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    return jnp.where(has_any, out, jnp.asarray(empty_value, x.dtype))


def first_error(step_probs_BxT: jax.Array, step_mask_BxT: jax.Array, threshold: float) -> jax.Array:
    """Returns idx_B (int32): the first unmasked step whose probability is < threshold, -1 when none.

    This is a ProcessBench prediction: the index of the earliest wrong step, or -1 for "all correct".
    """
    bad = step_mask_BxT.astype(bool) & (step_probs_BxT < threshold)
    if bad.shape[1] == 0:
        return jnp.full(bad.shape[:1], -1, jnp.int32)
    idx = jnp.argmax(bad, axis=1).astype(jnp.int32)
    return jnp.where(jnp.any(bad, axis=1), idx, jnp.int32(-1))


def pav_search_score(q_base_BxT: jax.Array, adv_BxT: jax.Array, alpha: float) -> jax.Array:
    """Returns the PAV effective reward Q^pi + alpha * A^mu per step, float32 [B, T]."""
    return as_float(q_base_BxT) + alpha * as_float(adv_BxT)
