"""Sampling throughput: prm-jax's KV-cache sampler against transformers `generate`, and the bandwidth floor.

Both sample exactly `new` tokens per row (prm-jax: an EOS id that can never be drawn; the peer:
`min_new_tokens = max_new_tokens`), at temperature 1 with top-p, from the same random-weight
Qwen2.5-0.5B shape, batch 64, prompt 256, 256 new tokens. prm-jax runs `prm_jax.sampling.Sampler`
(prefill + compiled `lax.while_loop` decode) with bf16 weights, as a user would for inference.
The floor: weights + live KV-cache bytes read per decode step (common.decode_bytes_floor) over the
measured copy bandwidth. Results go to results.json (section `sampler`) under $OUT.

Usage: python benchmarks/sampler.py [--tiny] [--peer|--no-peer] [--jax|--no-jax]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TOP_P = 0.95


def model_cfg(tiny: bool, attention: str = "xla", param_dtype: str = "bfloat16"):
    """Returns the prm-jax ModelConfig of the benchmark shape (tiny: common.TINY)."""
    from prm_jax import model

    s = common.TINY if tiny else common.QWEN25_05B
    return model.ModelConfig.preset(
        "qwen2.5-0.5b",
        vocab_size=s.vocab,
        d_model=s.d_model,
        n_layers=s.layers,
        n_heads=s.heads,
        n_kv_heads=s.kv_heads,
        head_dim=s.head_dim,
        mlp_dim=s.mlp,
        dtype="bfloat16",
        param_dtype=param_dtype,
        attention_impl=attention,
        score_head=False,
    )


def run_jax(tiny: bool, batch: int, prompt: int, new: int, iters: int, prefill_chunk: int = 0) -> dict:
    """Returns the prm-jax sampler's timing: first call (compile + run) and the median of `iters`."""
    import jax
    import numpy as np
    from prm_jax import model, sampling

    cfg = model_cfg(tiny)
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    prefixes = [list(rng.integers(2, cfg.vocab_size, prompt)) for _ in range(batch)]
    # eos_id -1 is never drawn, so every row runs to max_new_tokens like the peer's min_new_tokens.
    sampler = sampling.Sampler(
        cfg, params, pad_id=0, eos_id=-1, step_id=None, max_batch=batch, prefill_chunk=prefill_chunk
    )
    key = iter(range(10**6))

    def call():
        return sampler.sample(
            prefixes, jax.random.PRNGKey(next(key)), mode="full", max_new_tokens=new, temperature=1.0, top_p=TOP_P
        )

    t0 = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t0
    if first.num_tokens != batch * new:
        raise RuntimeError(f"sampler made {first.num_tokens} tokens, expected {batch} x {new}")
    t = common.time_steps(call, lambda s: s, 0, iters, "prm-jax sample")  # sample() returns numpy
    return {
        "new_tokens": batch * new,
        "first_call_s": first_s,
        "peak_bytes": common.jax_peak_bytes(),
        "device": jax.devices()[0].device_kind,
        **t,
    }


def worker(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--prompt", type=int, required=True)
    p.add_argument("--new", type=int, required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--prefill-chunk", type=int, default=0)
    a = p.parse_args(argv)
    try:
        res = run_jax(a.tiny, a.batch, a.prompt, a.new, a.iters, a.prefill_chunk)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}"[:2000]}
    common.emit(res)
    return 0


def derive(
    section: dict, shape: common.Shape, batch: int, prompt: int, new: int, bandwidth: float | None
) -> list[dict]:
    """Returns table rows: new tokens/s, ratio to generate, fraction of the bytes floor."""
    floor_bytes = common.decode_bytes_floor(shape, batch, prompt, new)
    floor_s = floor_bytes / bandwidth if bandwidth else None
    proc = section.get("peer") or {}
    peer = proc.get("tasks", {}).get("generate") or ({"error": proc["error"]} if proc.get("error") else {})
    peer_tps = peer["new_tokens"] / peer["median_s"] if peer.get("median_s") else None
    rows = []
    mine = [(f"prm-jax{k[3:]}", v) for k, v in section.items() if k.startswith("jax")]
    for impl, res in mine + [("hf-peer", peer)]:
        row = {"impl": impl, "error": res.get("error")}
        if res.get("median_s"):
            tps = res["new_tokens"] / res["median_s"]
            row.update(
                new_tokens_per_s=tps,
                call_s=res["median_s"],
                floor_fraction=(floor_s / res["median_s"]) if floor_s else None,
                vs_generate=(tps / peer_tps) if peer_tps else None,
                peak_gb=res["peak_bytes"] / 1e9 if res.get("peak_bytes") else None,
            )
        rows.append(row)
    return rows


COLUMNS = ["impl", "new_tokens_per_s", "call_s", "vs_generate", "floor_fraction", "peak_gb", "error"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    p = common.stage_parser(__doc__)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--tag", default="", help="suffix of the prm-jax row's key (e.g. an XLA-flag variant)")
    p.add_argument(
        "--prefill-chunk", type=int, default=0, help="Sampler(prefill_chunk=): slices of the prefill (0: one call)"
    )
    a = p.parse_args(argv)
    deadline = time.time() + a.budget if a.budget else None
    tiny = a.tiny
    batch, prompt, new = (4, 16, 8) if tiny else (64, 256, 256)
    iters = a.iters or (1 if tiny else 3)
    shape = common.TINY if tiny else common.QWEN25_05B
    common.update_results(
        "sampler",
        "config",
        {
            "batch": batch,
            "prompt": prompt,
            "new": new,
            "top_p": TOP_P,
            "floor_bytes": common.decode_bytes_floor(shape, batch, prompt, new),
        },
    )
    if not a.no_jax:
        res = common.launch(
            [
                os.path.abspath(__file__),
                "--worker",
                "--batch",
                str(batch),
                "--prompt",
                str(prompt),
                "--new",
                str(new),
                "--iters",
                str(iters),
                "--prefill-chunk",
                str(a.prefill_chunk),
            ]
            + (["--tiny"] if tiny else []),
            a.timeout,
            deadline=deadline,
            in_process=a.in_process,
        )
        common.update_results("sampler", "jax" + a.tag, res)
    if not a.no_peer:
        res = common.launch(
            [os.path.join(common.REPO, "benchmarks", "peer_hf.py"), "generate", "--gen-iters", str(1 if tiny else 2)]
            + (["--tiny"] if tiny else []),
            a.timeout,
            deadline=deadline,
            in_process=a.in_process,
        )
        common.update_results("sampler", "peer", res)
    results = common.read_json(common.RESULTS) or {}
    bw = ((results.get("ceilings") or {}).get("jax") or {}).get("copy_bytes_per_s")
    rows = derive(results.get("sampler", {}), shape, batch, prompt, new, bw)
    print(
        f"sampler: batch {batch}, prompt {prompt}, {new} new tokens, top-p {TOP_P}; floor "
        f"{common.fmt(common.decode_bytes_floor(shape, batch, prompt, new) / 1e9)} GB read at "
        f"{common.fmt(bw / 1e9 if bw else None)} GB/s"
    )
    print(common.table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
