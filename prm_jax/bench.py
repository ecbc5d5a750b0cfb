"""A short benchmark of the three hot paths on whatever device is present (`prm-jax info --bench`).

The PRM train step (objective bce, fp32 master weights, bf16 compute), the KV-cache sampler
(`sampling.Sampler`, full solutions, no early stop) and verifier scoring (`forward(lm_head=False)` +
the gather at step positions), each on random weights and tokens: tokens/s, ms per call, MFU where
the device's dense bf16 peak is known. On an accelerator the shape is Qwen2.5-0.5B's (the one
`benchmarks/run_gpu.sh` measures against the PyTorch peers); on a CPU the `tiny` preset. A figure of
a few seconds of timing, for a user's first look; `benchmarks/` holds the full measurements.
"""

from __future__ import annotations

import time

# Dense bf16 FLOP/s from the vendors' datasheets, matched on the device kind.
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12, "TPU V5P": 459e12, "TPU V5": 197e12}


class AttrDict(dict):
    """A dict with attribute access: the slice of a config that `train.setup` reads, with no
    ml_collections (which accelerator images often lack)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def peak_flops(device_kind: str) -> float | None:
    """Returns the datasheet dense-bf16 FLOP/s of a device kind, or None (CPU, unknown)."""
    kind = device_kind.upper()
    return next((v for k, v in PEAK_BF16.items() if k in kind), None)


def shapes(platform: str) -> dict:
    """Returns the benchmark sizes: Qwen2.5-0.5B at 8 x 2048 on accelerators, tiny on a CPU."""
    if platform == "cpu":
        return dict(preset="tiny", train=(4, 256), sample=(16, 32, 64), score=(16, 256))
    return dict(preset="qwen2.5-0.5b", train=(8, 2048), sample=(64, 256, 256), score=(64, 1024))


def _median_s(fn, sync, seconds: float, min_iters: int = 3) -> tuple[float, int]:
    """Returns (median seconds per call, calls timed) of `fn` after one warm-up, for about `seconds`."""
    sync(fn())
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    times.sort()
    return times[len(times) // 2], len(times)


def _model_cfg(preset: str, **kw):
    import jax

    from prm_jax import model

    on_gpu = jax.devices()[0].platform == "gpu"
    return model.ModelConfig.preset(preset, dtype="bfloat16", attention_impl="cudnn" if on_gpu else "xla", **kw)


def train_step(preset: str, batch: int, seq: int, seconds: float) -> dict:
    """Returns the bce train step's tokens/s and ms per step (random data; `run` adds the MFU)."""
    import jax
    import numpy as np

    from prm_jax import train
    from prm_jax.sharding import make_mesh

    cfg = _model_cfg(preset, param_dtype="float32")
    c = AttrDict(
        objective="bce",
        optim=AttrDict(lr=1e-5, warmup=0, decay="constant", clip=1.0, weight_decay=0.0),
        train=AttrDict(steps=1000, seed=0),
        loss=AttrDict(),
        mesh=AttrDict(shape={"data": 1}),
    )
    s = train.setup(c, model_cfg=cfg, mesh=make_mesh({"data": 1}, devices=jax.devices()[:1]))
    rng = np.random.default_rng(0)
    steps = 16
    pos = np.sort(np.stack([rng.choice(np.arange(1, seq), steps, replace=False) for _ in range(batch)]), 1)
    b = {
        "tokens": rng.integers(2, cfg.vocab_size, (batch, seq)).astype(np.int32),
        "positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
        "segment_ids": np.ones((batch, seq), np.int32),
        "step_pos": pos.astype(np.int32),
        "step_mask": np.ones((batch, steps), bool),
        "step_labels": rng.integers(0, 2, (batch, steps)).astype(np.float32),
    }
    fn = train.make_train_step(s, b)
    holder = {"state": train.init_state(s, seed=0)}
    dev = {k: jax.device_put(v) for k, v in b.items()}

    def step():
        holder["state"], m = fn(holder["state"], dev)
        return m["loss"]

    sec, _ = _median_s(step, jax.block_until_ready, seconds)
    return {"what": f"PRM train step (bce) {batch} x {seq}", "tokens_per_s": batch * seq / sec, "ms": sec * 1e3}


def sampler(preset: str, batch: int, prompt: int, new: int, seconds: float) -> dict:
    """Returns the sampler's new tokens/s and ms per call (every row runs to `new` tokens)."""
    import jax
    import numpy as np

    from prm_jax import model, sampling

    cfg = _model_cfg(preset, param_dtype="bfloat16", score_head=False)
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    prefixes = [list(rng.integers(2, cfg.vocab_size, prompt)) for _ in range(batch)]
    smp = sampling.Sampler(cfg, params, pad_id=0, eos_id=-1, step_id=None, max_batch=batch)  # -1: never drawn
    keys = iter(range(10**6))

    def call():
        return smp.sample(prefixes, jax.random.PRNGKey(next(keys)), mode="full", max_new_tokens=new, top_p=0.95)

    sec, _ = _median_s(call, lambda x: x, seconds)  # sample() returns host arrays
    return {
        "what": f"sampler {batch} rows, {prompt} + {new} tokens",
        "tokens_per_s": batch * new / sec,
        "ms": sec * 1e3,
    }


def scoring(preset: str, n: int, seq: int, seconds: float) -> dict:
    """Returns verifier scoring's tokens/s (forward without the LM head + the step gather)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from prm_jax import model
    from prm_jax import scoring as scoring_lib

    cfg = _model_cfg(preset, param_dtype="bfloat16")
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(2, cfg.vocab_size, (n, seq)).astype(np.int32))
    pos = jnp.asarray(np.sort(np.stack([rng.choice(np.arange(1, seq), 16, replace=False) for _ in range(n)]), 1))

    @jax.jit
    def score(p, t, sp):
        return jax.nn.sigmoid(scoring_lib.gather_steps(model.forward(cfg, p, t, lm_head=False).score, sp))

    sec, _ = _median_s(lambda: score(params, tokens, pos), jax.block_until_ready, seconds)
    return {"what": f"verifier scoring {n} x {seq}", "tokens_per_s": n * seq / sec, "ms": sec * 1e3}


def run(seconds: float = 30.0, progress: bool = True) -> dict:
    """Returns {device, preset, rows}: the three benchmarks, about `seconds` of timing in all."""
    import jax

    from prm_jax import flops

    dev = jax.devices()[0]
    sz = shapes(dev.platform)
    each = max(seconds / 3 - 2, 1.0)  # compiles come on top of the timing
    rows = []
    for name, fn, args in (
        ("train", train_step, sz["train"]),
        ("sampler", sampler, sz["sample"]),
        ("scoring", scoring, sz["score"]),
    ):
        if progress:
            print(f"[bench] {name} ...", flush=True)
        rows.append(dict(fn(sz["preset"], *args, each), bench=name))
    peak = peak_flops(dev.device_kind)
    cfg = _model_cfg(sz["preset"])
    b, s = sz["train"]
    model_flops = flops.step_flops(cfg, "bce", b, s) / (rows[0]["ms"] / 1e3)
    rows[0]["mfu"] = model_flops / peak if peak else None
    return {"device": dev.device_kind, "platform": dev.platform, "preset": sz["preset"], "rows": rows}


def table(res: dict) -> str:
    """Returns the benchmark result as a plain-text table."""
    lines = [f"device {res['device']} ({res['platform']}), model {res['preset']}, random weights, bf16 compute"]
    lines.append(f"{'benchmark':44s} {'tokens/s':>12s} {'ms/call':>10s} {'MFU':>6s}")
    for r in res["rows"]:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        lines.append(f"{r['what']:44s} {r['tokens_per_s']:12,.0f} {r['ms']:10.1f} {mfu:>6s}")
    return "\n".join(lines)
