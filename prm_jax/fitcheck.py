"""Ahead-of-time fit check: compile the sharded train step with abstract inputs, read memory and FLOPs.

Nothing is allocated: the state and the batch are `jax.ShapeDtypeStruct`s carrying their shardings,
and `jax.jit(...).lower(...).compile()` yields the per-device memory analysis of the partitioned
program (arguments, outputs, temporaries; donated state aliases its outputs) and its cost analysis.
Run it with N simulated CPU devices (`prm-jax fit-check --devices N` sets that up).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from prm_jax import objectives, train
from prm_jax.config import complete

GIB = 1024**3

_KEY_SPECS = {  # key -> (per-row shape in terms of L / T, dtype)
    "tokens": ("L", jnp.int32),
    "segment_ids": ("L", jnp.int32),
    "positions": ("L", jnp.int32),
    "step_ids": ("L", jnp.int32),
    "response_mask": ("L", jnp.bool_),
    "step_pos": ("T", jnp.int32),
    "step_labels": ("T", jnp.float32),
    "step_mask": ("T", jnp.bool_),
    "q_targets": ("T", jnp.float32),
    "outcome": ("", jnp.float32),
    "outcome_mask": ("", jnp.bool_),
    "v0": ("", jnp.float32),
}


def abstract_batch(objective: str, batch_size: int, seq_len: int, max_steps: int) -> dict:
    """Returns the batch of `objective` as ShapeDtypeStructs (global shapes, no sharding yet)."""
    keys = ["tokens", "segment_ids", "positions", *objectives.BATCH_KEYS[objective]]
    if objective == "implicit_dpo":
        keys += ["rejected_segment_ids", "rejected_positions"]
    out = {}
    for k in dict.fromkeys(keys):
        base = k[len("rejected_") :] if k.startswith("rejected_") else k
        dim, dtype = _KEY_SPECS[base]
        shape = (batch_size,) + ({"L": (seq_len,), "T": (max_steps,), "": ()}[dim])
        out[k] = jax.ShapeDtypeStruct(shape, dtype)
    return out


def fit_check(config, *, hbm_gb=(16.0, 80.0), vocab_size: int | None = None) -> dict:
    """Returns per-device memory (bytes), FLOPs and a fits verdict per HBM size for `config`'s step."""
    t0 = time.perf_counter()
    config = complete(config)
    s = train.setup(config, vocab_size=vocab_size)
    train_cfg = config.train
    batch = abstract_batch(
        config.objective, int(train_cfg.batch_size), int(train_cfg.seq_len), int(train_cfg.max_steps)
    )
    shard = train.batch_shardings_of(s, batch)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shard[k]) for k, v in batch.items()}
    step = train.make_train_step(s, batch)
    lowered = step.lower(s.abstract_state, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    arg = int(getattr(mem, "argument_size_in_bytes", 0))
    out = int(getattr(mem, "output_size_in_bytes", 0))
    alias = int(getattr(mem, "alias_size_in_bytes", 0))
    temp = int(getattr(mem, "temp_size_in_bytes", 0))
    code = int(getattr(mem, "generated_code_size_in_bytes", 0))
    total = arg + out - alias + temp
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(s.abstract_state.params))
    result = {
        "objective": config.objective,
        "model": config.model.hf_path or config.model.preset,
        "params": n_params,
        "devices": jax.device_count(),
        "mesh": dict(s.mesh.shape),
        "batch_size": int(train_cfg.batch_size),
        "seq_len": int(train_cfg.seq_len),
        "accum_steps": int(config.optim.accum_steps),
        "remat": s.model_cfg.remat,
        "dtype": s.model_cfg.dtype,
        "argument_bytes": arg,
        "output_bytes": out,
        "alias_bytes": alias,
        "temp_bytes": temp,
        "code_bytes": code,
        "total_bytes": total,
        "flops_per_device": float(cost.get("flops", float("nan"))) if cost else float("nan"),
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
    }
    result["flops_per_step"] = result["flops_per_device"] * result["devices"]
    result["model_flops_per_step"] = model_flops(
        s.model_cfg, config.objective, int(train_cfg.batch_size), int(train_cfg.seq_len)
    )
    result["fits"] = {f"{g:g}GB": total <= g * 1e9 for g in hbm_gb}
    return result


def model_flops(cfg, objective: str, batch_size: int, seq_len: int) -> float:
    """Returns the analytic training FLOPs of one step: 6 N per token for the trained model (N without
    the input embedding, and without the LM head for the score-head objectives), 2 N per token for a
    reference forward, plus 6 * 2 * layers * heads * head_dim * seq_len per token for attention scores.

    XLA's cost analysis counts a scanned layer stack once, so this is the number to compare with it.
    """
    d, f, h, kv, hd, n_l, v = (
        cfg.d_model,
        cfg.mlp_dim,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        cfg.n_layers,
        cfg.vocab_size,
    )
    per_layer = d * hd * (2 * h + 2 * kv) + 3 * d * f
    lm = d * v if objective not in ("bce", "orm", "pav") else d
    n = n_l * per_layer + lm
    tokens = batch_size * seq_len * (2 if objective == "implicit_dpo" else 1)
    attn = 6 * 2 * n_l * h * hd * seq_len
    train_flops = (6 * n + attn) * tokens
    if objective in ("implicit_ce", "implicit_dpo"):
        train_flops += (2 * n + attn / 3) * tokens
    return float(train_flops)


def format_result(r: dict) -> str:
    """Returns a human-readable multi-line summary of one fit_check result."""
    g = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [
        f"{r['objective']} {r['model']} ({r['params'] / 1e9:.2f}B params) on {r['devices']} devices, "
        f"mesh {r['mesh']}, batch {r['batch_size']}x{r['seq_len']}, accum {r['accum_steps']}, "
        f"remat {r['remat']}, compute {r['dtype']}",
        f"  per device: arguments {g(r['argument_bytes'])}  outputs {g(r['output_bytes'])}  "
        f"aliased {g(r['alias_bytes'])}  temps {g(r['temp_bytes'])}",
        f"  per device total {g(r['total_bytes'])}  ({r['total_bytes'] / 1e9:.2f} GB)",
        f"  FLOPs per step: XLA {r['flops_per_step']:.3e} ({r['flops_per_device']:.3e} per device; a "
        f"scanned layer stack counts once), analytic {r['model_flops_per_step']:.3e}",
        "  " + "  ".join(f"{k}: {'fits' if v else 'does NOT fit'}" for k, v in r["fits"].items()),
        f"  (lowered in {r['lower_s']:.1f} s, compiled in {r['compile_s']:.1f} s)",
    ]
    return "\n".join(lines)
