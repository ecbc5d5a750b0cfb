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
    "advantages": ("L", jnp.float32),
    "old_logprobs": ("L", jnp.float32),
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
    note = None
    if config.model.attention_impl == "cudnn" and jax.default_backend() == "cpu":
        # cuDNN flash attention has no CPU lowering: check with XLA attention, which materialises the
        # [B, heads, L, L] scores (kept for the backward pass without remat): an upper bound on memory.
        config = config.copy_and_resolve_references()
        config.model.attention_impl = "xla"
        note = "attention checked as XLA (cuDNN cannot compile on the CPU): memory is an upper bound"
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
    if note:
        result["note"] = note
    return result


def _replicated(tree, mesh):
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), tree)


def score_fit_check(
    model_cfg,
    family: str,
    *,
    batch_size: int,
    seq_len: int,
    max_steps: int = 64,
    mesh_shape=None,
    rules=None,
    hbm_gb=(16.0, 80.0),
) -> dict:
    """Returns per-device memory (bytes) and a fits verdict per HBM size for scoring one batch with a
    PRM family's read-out (`prm_jax.heads.FAMILIES`): the family's jitted Verifier kernel compiled
    for `batch_size` x `seq_len` tokens with abstract params in the compute dtype, sharded over the
    mesh by the logical-axis rules (an implicit PRM holds its reference too)."""
    from prm_jax import heads, sharding, verifier
    from prm_jax import model as M

    if family not in heads.FAMILIES:
        raise ValueError(f"unknown PRM family {family!r}; choose one of {', '.join(heads.FAMILIES)}")
    t0 = time.perf_counter()
    score = family in ("prm_jax", "token_classification", "skywork")
    cfg = model_cfg.replace(param_dtype=model_cfg.dtype, score_head=score, score_likelihood=False)
    mesh = sharding.make_mesh(mesh_shape)
    rules = sharding.normalize_rules(rules)
    abstract = M.abstract_params(cfg)
    shard = sharding.param_shardings(M.param_logical_axes(cfg), abstract, mesh, rules)
    params = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract, shard)
    bs = lambda n: sharding.batch_sharding(mesh, n)  # noqa: E731
    row = lambda dt: jax.ShapeDtypeStruct((batch_size, seq_len), dt, sharding=bs(2))  # noqa: E731
    step_pos = jax.ShapeDtypeStruct((batch_size, max_steps), jnp.int32, sharding=bs(2))
    tokens, positions, segments = row(jnp.int32), row(jnp.int32), row(jnp.int32)
    dt, d = jnp.dtype(cfg.dtype), cfg.d_model
    if family == "qwen_prm":
        head = {"w1": (d, d), "b1": (d,), "w2": (d, 2), "b2": (2,)}
        head = _replicated({k: jax.ShapeDtypeStruct(v, dt) for k, v in head.items()}, mesh)
        fn, args = verifier._mlp_head_probs, (cfg, params, tokens, positions, segments, step_pos, head)
    elif family in ("math_shepherd", "rlhflow"):
        pair = _replicated(jax.ShapeDtypeStruct((2,), jnp.int32), mesh)
        fn, args = verifier._lm_pair_probs, (cfg, params, tokens, positions, segments, step_pos, pair)
    elif family == "implicit":
        beta = _replicated(jax.ShapeDtypeStruct((), jnp.float32), mesh)
        args = (cfg, params, params, tokens, positions, segments, row(jnp.int32), max_steps, beta, 1024)
        fn = verifier._implicit_rewards
    else:
        fn, args = (
            verifier._score_head_probs,
            (cfg, params, tokens, positions, segments, step_pos, row(jnp.int32), 1024),
        )
    with sharding.activation_context(mesh, rules):
        lowered = fn.lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    arg, out = int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes)
    temp, alias = int(mem.temp_size_in_bytes), int(getattr(mem, "alias_size_in_bytes", 0))
    total = arg + out - alias + temp
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract))
    return {
        "family": family,
        "params": n_params * (2 if family == "implicit" else 1),
        "devices": jax.device_count(),
        "mesh": dict(mesh.shape),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "dtype": cfg.dtype,
        "argument_bytes": arg,
        "output_bytes": out,
        "temp_bytes": temp,
        "total_bytes": total,
        "fits": {f"{g:g}GB": total <= g * 1e9 for g in hbm_gb},
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
    }


def format_score_result(r: dict) -> str:
    """Returns a human-readable summary of one score_fit_check result."""
    g = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
    return "\n".join(
        [
            f"scoring with {r['family']} ({r['params'] / 1e9:.2f}B params, {r['dtype']}) on {r['devices']} devices, "
            f"mesh {r['mesh']}, batch {r['batch_size']}x{r['seq_len']}",
            f"  per device: arguments {g(r['argument_bytes'])}  outputs {g(r['output_bytes'])}  temps "
            f"{g(r['temp_bytes'])}  total {g(r['total_bytes'])} ({r['total_bytes'] / 1e9:.2f} GB)",
            "  " + "  ".join(f"{k}: {'fits' if v else 'does NOT fit'}" for k, v in r["fits"].items()),
            f"  (lowered in {r['lower_s']:.1f} s, compiled in {r['compile_s']:.1f} s)",
        ]
    )


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
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    return "\n".join(lines)
