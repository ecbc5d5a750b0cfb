"""Training targets for verifiers: PRM800K ratings -> step labels, Monte-Carlo labels, PAV advantages.

The label helpers work on Python lists, numpy arrays and jax arrays alike (numpy in, numpy out; jax
in, jax out), so the data module can call them per record and the train step per batch.
"""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

NEUTRAL_POLICIES = ("positive", "negative")
AFTER_FIRST_ERROR_POLICIES = ("keep", "drop")


def _xp(*arrays):
    """Returns jax.numpy if any input is a jax array, else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def rating_to_label(ratings, neutral: str = "positive"):
    """Returns float32 labels in {0, 1} from PRM800K ratings {-1, 0, 1} (1 good, 0 neutral, -1 bad).

    neutral='positive' counts a 0 rating as correct (Qwen2.5-Math-PRM); 'negative' counts it as an
    error (TRL's PRM800K conversion). Ratings outside {-1, 0, 1} raise ValueError (numpy inputs).
    """
    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"neutral must be one of {NEUTRAL_POLICIES}, got {neutral!r}")
    xp = _xp(ratings)
    r = xp.asarray(ratings)
    if xp is np:
        if r.dtype == object:
            raise ValueError(f"ratings must be integers in {{-1, 0, 1}}, got {ratings!r}")
        bad = ~np.isin(r, (-1, 0, 1))
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"rating {r[where]!r} at index {where} is not one of -1, 0, 1")
    threshold = 0 if neutral == "positive" else 1
    return (r >= threshold).astype(xp.float32)


def mask_after_first_error(labels_T, mask_T=None, policy: str = "keep"):
    """Returns the step mask [..., T] (bool) with the steps after the first error dropped if policy='drop'.

    The first error is the first unmasked step with label < 0.5; it stays in the mask (it is the
    step the verifier must learn to flag). policy='keep' returns the mask unchanged.
    """
    if policy not in AFTER_FIRST_ERROR_POLICIES:
        raise ValueError(f"after_first_error must be one of {AFTER_FIRST_ERROR_POLICIES}, got {policy!r}")
    xp = _xp(labels_T, mask_T)
    y = xp.asarray(labels_T, dtype=xp.float32)
    m = xp.ones(y.shape, bool) if mask_T is None else xp.asarray(mask_T, dtype=bool)
    if policy == "keep":
        return m
    err = (y < 0.5) & m
    errors_before = xp.cumsum(err.astype(xp.int32), axis=-1) - err.astype(xp.int32)
    return m & (errors_before == 0)


def prm800k_step_labels(ratings, neutral: str = "positive", after_first_error: str = "keep"):
    """Returns (labels [..., T] float32, mask [..., T] bool) for one rated PRM800K solution or a batch."""
    labels = rating_to_label(ratings, neutral)
    return labels, mask_after_first_error(labels, None, after_first_error)


def mc_labels(success_BxTxK):
    """Returns (hard_BxT, soft_BxT) float32 Math-Shepherd labels from K rollouts after each step prefix.

    hard = 1 if any rollout reaches the gold answer, soft = the fraction that do.
    """
    xp = _xp(success_BxTxK)
    s = xp.asarray(success_BxTxK)
    if s.ndim < 1 or s.shape[-1] == 0:
        raise ValueError(f"success_BxTxK needs a non-empty last (rollout) axis, got shape {s.shape}")
    s = s.astype(xp.float32)
    return xp.any(s > 0.5, axis=-1).astype(xp.float32), xp.mean(s, axis=-1)


def pav_advantages(q_BxT, v0_B, step_mask_BxT):
    """Returns A_BxT (float32): A_t = Q_t - Q_prev, Q_prev the previous unmasked step's Q, else v0.

    v0 is the prover's success probability from the bare question (Q_{-1}). Masked steps get 0, so
    the advantages of a row sum to Q_last - v0 (telescoping).
    """
    q = jnp.asarray(q_BxT)
    q = q.astype(jnp.promote_types(q.dtype, jnp.float32))
    m = jnp.asarray(step_mask_BxT, bool)
    v0 = jnp.asarray(v0_B, q.dtype)
    T = q.shape[-1]
    idx = jnp.where(m, jnp.arange(T), -1)
    last_upto = jax.lax.cummax(idx, axis=q.ndim - 1)
    prev = jnp.concatenate([jnp.full(idx.shape[:-1] + (1,), -1, idx.dtype), last_upto[..., :-1]], axis=-1)
    q_prev = jnp.take_along_axis(q, jnp.maximum(prev, 0), axis=-1)
    q_prev = jnp.where(prev >= 0, q_prev, v0[..., None])
    return jnp.where(m, q - q_prev, 0.0)


def best_of_k_q(q, k: int):
    """Returns Q of the Best-of-K(pi) prover, 1 - (1 - q)^k, from the base policy's Q (Setlur et al.)."""
    if k < 1:
        raise ValueError(f"best-of-K prover needs k >= 1, got {k}")
    xp = _xp(q)
    q = xp.asarray(q, dtype=xp.float32)
    return 1.0 - (1.0 - q) ** k
