"""Verifier scoring throughput for best-of-N: prm-jax's jitted forward + marker gather against the peer.

prm-jax: `forward(lm_head=False)` (no vocabulary projection), the step-score head read at each
step's marker with `scoring.gather_steps`, sigmoid: one jitted function on [N, L] candidate
solutions with bf16 weights. Peer: `Qwen2ForTokenClassification` forward under inference_mode with
the 2-class softmax at every token. Default: N = 64 candidates x 1024 tokens, 32 steps each.
Results go to results.json (section `scoring`) under $OUT.

Usage: python benchmarks/scoring.py [--tiny] [--no-jax] [--no-peer]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

STEPS = 32


def make_scorer(cfg):
    """Returns jitted score(params, tokens_NxL, step_pos_NxT) -> P(step correct) [N, T] float32."""
    import jax
    from prm_jax import model, scoring

    @jax.jit
    def score(params, tokens_NxL, step_pos_NxT):
        out = model.forward(cfg, params, tokens_NxL, lm_head=False)
        return jax.nn.sigmoid(scoring.gather_steps(out.score, step_pos_NxT))

    return score


def run_jax(tiny: bool, n: int, seq: int, steps: int, warmup: int) -> dict:
    """Returns the timing of the jitted scorer (median of `steps` calls after `warmup`)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from prm_jax import model

    s = common.TINY if tiny else common.QWEN25_05B
    on_gpu = jax.devices()[0].platform == "gpu"
    cfg = model.ModelConfig.preset(
        "qwen2.5-0.5b",
        vocab_size=s.vocab,
        d_model=s.d_model,
        n_layers=s.layers,
        n_heads=s.heads,
        n_kv_heads=s.kv_heads,
        head_dim=s.head_dim,
        mlp_dim=s.mlp,
        dtype="bfloat16",
        param_dtype="bfloat16",
        attention_impl="cudnn" if on_gpu else "xla",
    )
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(2, s.vocab, (n, seq), dtype=np.int32))
    pos = np.sort(np.stack([rng.choice(np.arange(1, seq), STEPS, replace=False) for _ in range(n)]), 1)
    pos = jnp.asarray(pos.astype(np.int32))
    score = make_scorer(cfg)
    t0 = time.perf_counter()
    probs = jax.block_until_ready(score(params, tokens, pos))
    first_s = time.perf_counter() - t0
    if probs.shape != (n, STEPS) or not bool(jnp.all(jnp.isfinite(probs))):
        raise RuntimeError(f"scorer returned shape {probs.shape} or non-finite values")
    t = common.time_steps(lambda: score(params, tokens, pos), jax.block_until_ready, warmup, steps, "prm-jax score")
    return {
        "tokens": n * seq,
        "first_call_s": first_s,
        "peak_bytes": common.jax_peak_bytes(),
        "device": jax.devices()[0].device_kind,
        **t,
    }


def worker(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true")
    for k in ("n", "seq", "steps", "warmup"):
        p.add_argument(f"--{k}", type=int, required=True)
    a = p.parse_args(argv)
    try:
        res = run_jax(a.tiny, a.n, a.seq, a.steps, a.warmup)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}"[:2000]}
    common.emit(res)
    return 0


def derive(section: dict, shape: common.Shape, seq: int, peak: float | None) -> list[dict]:
    """Returns table rows: tokens/s, MFU of the forward, ratio to the peer."""
    proc = section.get("peer") or {}
    peer = proc.get("tasks", {}).get("score") or ({"error": proc["error"]} if proc.get("error") else {})
    peer_tps = peer["tokens"] / peer["median_s"] if peer.get("median_s") else None
    fpt = common.flops_per_token(shape, seq, "score")
    rows = []
    for impl, res in (("prm-jax", section.get("jax") or {}), ("hf-peer", peer)):
        row = {"impl": impl, "error": res.get("error")}
        if res.get("median_s"):
            tps = res["tokens"] / res["median_s"]
            row.update(
                tokens_per_s=tps,
                call_ms=1e3 * res["median_s"],
                mfu=tps * fpt / peak if peak else None,
                vs_peer=tps / peer_tps if peer_tps else None,
                peak_gb=res["peak_bytes"] / 1e9 if res.get("peak_bytes") else None,
            )
        rows.append(row)
    return rows


COLUMNS = ["impl", "tokens_per_s", "call_ms", "mfu", "vs_peer", "peak_gb", "error"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    p = common.stage_parser(__doc__)
    a = p.parse_args(argv)
    deadline = time.time() + a.budget if a.budget else None
    tiny = a.tiny
    n, seq = (4, 64) if tiny else (64, 1024)
    steps, warmup = (2, 1) if tiny else (10, 2)
    shape = common.TINY if tiny else common.QWEN25_05B
    common.update_results("scoring", "config", {"n": n, "seq": seq, "steps_per_solution": STEPS})
    if not a.no_jax:
        res = common.launch(
            [
                os.path.abspath(__file__),
                "--worker",
                "--n",
                str(n),
                "--seq",
                str(seq),
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
            ]
            + (["--tiny"] if tiny else []),
            a.timeout,
            deadline=deadline,
            in_process=a.in_process,
        )
        common.update_results("scoring", "jax", res)
    if not a.no_peer:
        res = common.launch(
            [
                os.path.join(common.REPO, "benchmarks", "peer_hf.py"),
                "score",
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
            ]
            + (["--tiny"] if tiny else []),
            a.timeout,
            deadline=deadline,
            in_process=a.in_process,
        )
        common.update_results("scoring", "peer", res)
    results = common.read_json(common.RESULTS) or {}
    section = results.get("scoring", {})
    device = (section.get("jax") or {}).get("device")
    peak, source = common.peak_flops(results, device)
    print(f"verifier scoring: {n} candidates x {seq} tokens, {STEPS} steps each; MFU against {source} peak")
    print(common.table(derive(section, shape, seq, peak), COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
