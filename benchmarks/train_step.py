"""Train-step throughput: prm-jax's BCE-PRM and implicit-PRM steps against the Hugging Face peer.

prm-jax runs exactly what a user gets: `prm_jax.train.setup` + `init_state` + `make_train_step`
(AdamW, fp32 master params, bf16 compute, the state donated, a one-device mesh) with the objectives of
`prm_jax.objectives` on the Qwen2.5-0.5B shape, 8 x 2048 tokens, random weights. Each variant runs
in its own process (its own peak memory; one OOM loses one row); the peer (`peer_hf.py`) runs after,
in another process. Results go to results.json (section `train_step`) under $OUT.

Usage: python benchmarks/train_step.py [--tiny] [--jax V1,V2|none] [--peer T1,T2|none]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from prm_jax.bench import AttrDict as _Cfg  # noqa: E402  (a config slice without ml_collections)

# Variant -> settings. attention: 'cudnn' | 'xla'; remat: a ModelConfig.remat name; scan: layers
# under nn.scan; logprobs: 'chunked' (objectives' hidden @ W a chunk at a time) or 'full' ([B,L,V]).
VARIANTS = {
    "bce": dict(objective="bce", attention="cudnn", remat="none", scan=True),
    "implicit": dict(objective="implicit_ce", attention="cudnn", remat="none", scan=True, logprobs="chunked"),
    # XLA attention materialises the [B, heads, L, L] scores; without remat they are kept for the
    # backward pass in every layer (~135 GB at 8 x 2048: the CPU AOT compile's temp was 165 GB), so
    # it is compared with cuDNN at the remat policy that recomputes attention (dots_no_batch).
    "bce_xla_attn": dict(objective="bce", attention="xla", remat="dots_no_batch", scan=True),
    "bce_remat_dots_no_batch": dict(objective="bce", attention="cudnn", remat="dots_no_batch", scan=True),
    "implicit_full_logprobs": dict(
        objective="implicit_ce", attention="cudnn", remat="none", scan=True, logprobs="full"
    ),
    "bce_remat_dots": dict(objective="bce", attention="cudnn", remat="dots", scan=True),
    "bce_remat_full": dict(objective="bce", attention="cudnn", remat="full", scan=True),
    "bce_unrolled": dict(objective="bce", attention="cudnn", remat="none", scan=False),
    "implicit_bf16_head": dict(
        objective="implicit_ce", attention="cudnn", remat="none", scan=True, logprobs="chunked_bf16_head"
    ),
    "implicit_remat_dots": dict(
        objective="implicit_ce", attention="cudnn", remat="dots", scan=True, logprobs="chunked"
    ),
}
DEFAULT_JAX = "bce,implicit,bce_xla_attn,implicit_full_logprobs"
DEFAULT_PEER = "prm_eager,implicit_eager,prm_compile"  # the long compile last
STEPS_PER_ROW = 32
BETA = 0.05


def make_batch(objective: str, batch: int, seq: int, vocab: int, seed: int = 0) -> dict:
    """Returns a random numpy batch in the DESIGN.md contract for `objective` (no packing).

    Rows are unpacked (no segment_ids), like the peer's rows, so attention is plain causal. BCE rows
    carry STEPS_PER_ROW markers at random positions; implicit rows have a response over the last
    three quarters split into STEPS_PER_ROW steps, each closed by its last token.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab, (batch, seq), dtype=np.int32)
    T = STEPS_PER_ROW
    if objective == "bce":
        pos = np.sort(np.stack([rng.choice(np.arange(1, seq), T, replace=False) for _ in range(batch)]), 1)
        return {
            "tokens": tokens,
            "step_pos": pos.astype(np.int32),
            "step_labels": rng.integers(0, 2, (batch, T)).astype(np.float32),
            "step_mask": np.ones((batch, T), bool),
        }
    start = seq // 4
    bounds = np.linspace(start, seq, T + 1).astype(int)
    step_ids = np.full((batch, seq), -1, np.int32)
    for t in range(T):
        step_ids[:, bounds[t] : bounds[t + 1]] = t
    resp = step_ids >= 0
    return {
        "tokens": tokens,
        "response_mask": resp,
        "outcome": rng.integers(0, 2, batch).astype(np.float32),
        "outcome_mask": np.ones(batch, bool),
        "step_ids": step_ids,
        "step_pos": np.tile((bounds[1:] - 1).astype(np.int32), (batch, 1)),
        "step_mask": np.ones((batch, T), bool),
    }


def _full_logprob_loss(model_cfg):
    """Returns the implicit CE loss through the full [B, L, V] logits (the 'before' of chunking)."""
    import jax
    from prm_jax import losses, model, scoring

    def loss_fn(params, ref_params, batch):
        logp = scoring.token_logprobs(model.forward(model_cfg, params, batch["tokens"]).logits, batch["tokens"])
        ref = jax.lax.stop_gradient(ref_params)
        ref_logp = scoring.token_logprobs(model.forward(model_cfg, ref, batch["tokens"]).logits, batch["tokens"])
        loss, metrics = losses.implicit_ce_loss(
            logp, jax.lax.stop_gradient(ref_logp), batch["response_mask"], batch["outcome"], BETA
        )
        return loss, {"metrics": metrics}

    return loss_fn


def _bf16_head_loss(model_cfg, chunk: int = 1024):
    """Returns the implicit CE loss through the chunked path with the output embedding cast to the
    compute dtype first (bf16 x bf16 -> f32 dots), where `objectives` passes the fp32 table and
    `jnp.dot` promotes the bf16 hidden states to an f32 x f32 product."""
    import jax
    import jax.numpy as jnp
    from prm_jax import losses, model, scoring

    def logp_of(params, tokens):
        hidden = model.forward(model_cfg, params, tokens, lm_head=False).hidden
        w_DxV = model.output_embedding(model_cfg, params).astype(jnp.dtype(model_cfg.dtype))
        return scoring.token_logprobs_chunked(hidden, w_DxV, tokens, chunk_size=chunk)

    def loss_fn(params, ref_params, batch):
        logp = logp_of(params, batch["tokens"])
        ref_logp = jax.lax.stop_gradient(logp_of(jax.lax.stop_gradient(ref_params), batch["tokens"]))
        loss, metrics = losses.implicit_ce_loss(logp, ref_logp, batch["response_mask"], batch["outcome"], BETA)
        return loss, {"metrics": metrics}

    return loss_fn


def run_variant(name: str, tiny: bool, steps: int, warmup: int, batch: int, seq: int) -> dict:
    """Returns one variant's timing, tokens/s, MFU inputs and peak memory (runs in this process)."""
    import jax
    import numpy as np
    from prm_jax import model, train
    from prm_jax.sharding import make_mesh

    spec = dict(VARIANTS[name])
    on_gpu = jax.devices()[0].platform == "gpu"
    attention = spec["attention"] if on_gpu else "xla"  # cuDNN attention exists only on GPU
    base = "tiny" if tiny else "qwen2.5-0.5b"
    overrides = (
        dict(
            vocab_size=common.TINY.vocab,
            d_model=common.TINY.d_model,
            n_layers=common.TINY.layers,
            n_heads=common.TINY.heads,
            n_kv_heads=common.TINY.kv_heads,
            head_dim=common.TINY.head_dim,
            mlp_dim=common.TINY.mlp,
            qkv_bias=True,
            tie_embeddings=True,
            architecture="qwen2",
        )
        if tiny
        else {}
    )
    cfg = model.ModelConfig.preset(
        base,
        dtype="bfloat16",
        param_dtype="float32",
        attention_impl=attention,
        remat=spec["remat"],
        scan_layers=spec["scan"],
        **overrides,
    )
    config = _Cfg(
        objective=spec["objective"],
        optim=_Cfg(lr=1e-5, warmup=0, decay="constant", clip=1.0, weight_decay=0.0),
        train=_Cfg(steps=1000, seed=0),
        loss=_Cfg(beta=BETA, logprob_chunk=1024),
        mesh=_Cfg(shape={"data": 1}),
    )
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])  # one device, also under 8 fake CPUs
    s = train.setup(config, model_cfg=cfg, mesh=mesh)
    if spec.get("logprobs") == "full":
        s = s._replace(loss_fn=_full_logprob_loss(cfg))
    elif spec.get("logprobs") == "chunked_bf16_head":
        s = s._replace(loss_fn=_bf16_head_loss(cfg))
    batch_np = make_batch(spec["objective"], batch, seq, cfg.vocab_size)
    state = train.init_state(s, seed=0)
    fn = train.make_train_step(s, batch_np)
    batch_dev = {k: jax.device_put(v) for k, v in batch_np.items()}

    holder = {"state": state}

    def step():
        holder["state"], metrics = fn(holder["state"], batch_dev)
        return metrics["loss"]

    t0 = time.perf_counter()
    loss0 = float(jax.block_until_ready(step()))
    first_s = time.perf_counter() - t0
    t = common.time_steps(step, jax.block_until_ready, warmup, steps, name)
    loss_last = float(step())
    if not (np.isfinite(loss0) and np.isfinite(loss_last)):
        raise FloatingPointError(f"variant {name}: non-finite loss ({loss0} -> {loss_last})")
    kind = "prm" if spec["objective"] == "bce" else "implicit"
    return {
        "variant": name,
        **spec,
        "attention": attention,
        "tokens": batch * seq,
        "flops_per_token": common.flops_per_token(common.TINY if tiny else common.QWEN25_05B, seq, kind),
        "kind": kind,
        "first_step_s": first_s,
        "loss_first": loss0,
        "loss_last": loss_last,
        "peak_bytes": common.jax_peak_bytes(),
        "device": jax.devices()[0].device_kind,
        **t,
    }


def worker(argv) -> int:
    """Runs the named variants in this process and prints one RESULT line (list of rows)."""
    p = argparse.ArgumentParser()
    p.add_argument("--variants", required=True)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    a = p.parse_args(argv)
    rows = []
    for name in a.variants.split(","):
        t0 = time.perf_counter()
        try:
            row = run_variant(name, a.tiny, a.steps, a.warmup, a.batch, a.seq)
        except Exception as e:  # an OOM in one variant must not lose the others
            row = {"variant": name, "error": f"{type(e).__name__}: {e}"[:2000]}
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"[train_step] {name}: " + (row.get("error") or f"median {row['median_s']:.4f}s"),
            file=sys.stderr,
            flush=True,
        )
        common.emit({"rows": rows})  # cumulative after every variant: a timeout keeps what finished
    return 0


def derive(
    rows: list[dict], peer: dict | None, peak: float | None, shape: common.Shape = common.QWEN25_05B, seq: int = 2048
) -> list[dict]:
    """Returns table rows: tokens/s, MFU against `peak`, peak GB, and ratios against the peer."""
    peer_tasks = (peer or {}).get("tasks", {})
    ref_tps = {}
    for task, res in peer_tasks.items():
        if res.get("median_s"):
            ref_tps[task] = res["tokens"] / res["median_s"]
    out = []
    for r in rows:
        row = {"impl": "prm-jax", "name": r["variant"], "error": r.get("error")}
        if r.get("median_s"):
            tps = r["tokens"] / r["median_s"]
            row.update(
                tokens_per_s=tps,
                step_ms=1e3 * r["median_s"],
                mfu=(tps * r["flops_per_token"] / peak) if peak else None,
                peak_gb=r["peak_bytes"] / 1e9 if r.get("peak_bytes") else None,
            )
            if r["kind"] == "prm":
                best_peer = ref_tps.get("prm_compile") or ref_tps.get("prm_eager")
                row["vs_peer"] = tps / best_peer if best_peer else None
                row["vs_peer_eager"] = tps / ref_tps["prm_eager"] if "prm_eager" in ref_tps else None
            else:
                row["vs_peer"] = tps / ref_tps["implicit_eager"] if "implicit_eager" in ref_tps else None
                pk = peer_tasks.get("implicit_eager", {}).get("peak_bytes")
                row["mem_vs_peer"] = r["peak_bytes"] / pk if pk and r.get("peak_bytes") else None
        out.append(row)
    if (peer or {}).get("error"):
        out.append({"impl": "hf-peer", "name": "(process)", "error": peer["error"]})
    for task, res in peer_tasks.items():
        row = {"impl": "hf-peer", "name": task, "error": res.get("error") or res.get("skipped")}
        if res.get("median_s"):
            tps = res["tokens"] / res["median_s"]
            fpt = common.flops_per_token(shape, seq, "prm" if task.startswith("prm") else "implicit")
            row.update(
                tokens_per_s=tps,
                step_ms=1e3 * res["median_s"],
                mfu=(tps * fpt / peak) if (peak and fpt) else None,
                peak_gb=res["peak_bytes"] / 1e9 if res.get("peak_bytes") else None,
            )
        out.append(row)
    return out


COLUMNS = [
    "impl",
    "name",
    "tokens_per_s",
    "step_ms",
    "mfu",
    "peak_gb",
    "vs_peer",
    "vs_peer_eager",
    "mem_vs_peer",
    "error",
]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU, 2 steps (the test)")
    p.add_argument(
        "--jax", default=None, help=f"prm-jax variants or 'none' (default {DEFAULT_JAX}; known: {','.join(VARIANTS)})"
    )
    p.add_argument("--peer", default=None, help=f"peer tasks or 'none' (default {DEFAULT_PEER})")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker process")
    p.add_argument(
        "--budget", type=float, default=None, help="seconds for this whole stage: later workers get what is left"
    )
    p.add_argument("--tag", default="", help="suffix of the rows' names (e.g. an XLA-flag variant)")
    p.add_argument(
        "--one-worker",
        action="store_true",
        help="run all prm-jax variants in one worker process (peak memory is then shared)",
    )
    p.add_argument(
        "--in-process", action="store_true", help="run workers and the peer in this process (tiny CPU runs, tests)"
    )
    a = p.parse_args(argv)
    deadline = time.time() + a.budget if a.budget else None
    tiny = a.tiny
    steps = a.steps or (2 if tiny else 10)
    warmup = a.warmup if a.warmup is not None else (1 if tiny else 2)
    batch, seq = (2, 64) if tiny else (8, 2048)
    jax_variants = (
        []
        if a.jax == "none"
        else (a.jax or ("bce,implicit,implicit_full_logprobs" if tiny else DEFAULT_JAX)).split(",")
    )
    unknown = [v for v in jax_variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    peer_tasks = None if a.peer == "none" else (a.peer or DEFAULT_PEER)

    common_args = ["--steps", str(steps), "--warmup", str(warmup), "--batch", str(batch), "--seq", str(seq)] + (
        ["--tiny"] if tiny else []
    )
    groups = [jax_variants] if (a.one_worker or tiny) else [[v] for v in jax_variants]
    script = os.path.abspath(__file__)
    for group in filter(None, groups):
        res = common.launch(
            [script, "--worker", "--variants", ",".join(group)] + common_args,
            a.timeout,
            deadline=deadline,
            in_process=a.in_process,
        )
        rows = list(res.get("rows") or [])
        done = {r["variant"] for r in rows}
        rows += [
            {"variant": v, "error": res.get("error") or "no result", "stderr_tail": res.get("stderr_tail")}
            for v in group
            if v not in done
        ]
        for row in rows:
            row["variant"] += a.tag
            common.update_results("train_step", row["variant"], row)
    if peer_tasks:
        peer_args = [
            os.path.join(common.REPO, "benchmarks", "peer_hf.py"),
            peer_tasks,
            "--steps",
            str(steps),
            "--warmup",
            str(warmup),
        ] + (["--tiny"] if tiny else [])
        res = common.launch(peer_args, a.timeout, deadline=deadline, in_process=a.in_process)
        common.update_results("train_step", "peer", res)

    results = common.read_json(common.RESULTS) or {}
    section = results.get("train_step", {})
    rows = [v for k, v in section.items() if k != "peer"]
    device = next((r.get("device") for r in rows if r.get("device")), None)
    peak, source = common.peak_flops(results, device)
    table = derive(rows, section.get("peer"), peak, common.TINY if tiny else common.QWEN25_05B, seq)
    print(
        f"train step ({'tiny, CPU' if tiny else '8 x 2048, Qwen2.5-0.5B shape'}); "
        f"MFU against {source} peak {common.fmt(peak)} FLOP/s"
    )
    print(common.table(table, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
