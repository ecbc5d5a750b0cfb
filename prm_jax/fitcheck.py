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

from prm_jax import flops, objectives, train
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
    # step_ids too: a score head with likelihood features reads it (the loader always makes it)
    keys = ["tokens", "segment_ids", "positions", "step_ids", *objectives.BATCH_KEYS[objective]]
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
    result["model_flops_per_step"] = flops.step_flops(
        s.model_cfg, config.objective, int(train_cfg.batch_size), int(train_cfg.seq_len)
    )
    result["fits"] = {f"{g:g}GB": total <= g * 1e9 for g in hbm_gb}
    return result


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
