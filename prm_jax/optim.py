"""The optimizer: AdamW with linear warmup + cosine decay and global-norm clipping, from `config.optim`.

Gradient accumulation is not here: `train.py` scans over micro-batches inside one step, so one
optimizer update is one train step whatever `accum_steps` is. `head_only_steps` is applied in
`train.py` by zeroing the updates of non-head parameters while `step < head_only_steps`.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from prm_jax.config import complete_section

HEAD_KEYS = ("score_head",)


def schedule(optim_cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Returns the learning-rate schedule: 0 -> lr over `warmup` steps, then cosine to lr * final_frac."""
    optim_cfg = complete_section("optim", optim_cfg)
    lr = float(optim_cfg.lr)
    warmup = int(optim_cfg.warmup)
    decay = optim_cfg.decay
    final = lr * float(optim_cfg.final_frac)
    total = max(int(total_steps), warmup + 1)
    if decay == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 0), total, final)
    if decay == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup]
        )
    if decay == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.linear_schedule(lr, final, total - warmup)], [warmup]
        )
    raise ValueError(f"optim.decay {decay!r}: choose 'cosine', 'linear' or 'constant'")


def _decay_mask(params):
    # No weight decay on norms, biases and other vectors.
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(
    optim_cfg: Mapping[str, Any], total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (tx, lr_schedule): clip_by_global_norm(clip) then AdamW(schedule, weight_decay)."""
    optim_cfg = complete_section("optim", optim_cfg)
    sched = schedule(optim_cfg, total_steps)
    parts = []
    clip = optim_cfg.clip
    if clip:
        parts.append(optax.clip_by_global_norm(float(clip)))
    parts.append(
        optax.adamw(
            sched,
            b1=float(optim_cfg.b1),
            b2=float(optim_cfg.b2),
            eps=float(optim_cfg.eps),
            weight_decay=float(optim_cfg.weight_decay),
            mask=_decay_mask,
        )
    )
    return optax.chain(*parts), sched


def is_head_path(path) -> bool:
    """Returns True when a param's key path lies under the score head."""
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return any(h in n for n in names for h in HEAD_KEYS)


def head_mask(params) -> Any:
    """Returns a pytree of bools, True for score-head parameters."""
    return jax.tree_util.tree_map_with_path(lambda p, _: is_head_path(p), params)
