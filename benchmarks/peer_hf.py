"""The PyTorch / Hugging Face peer of each benchmark, run in its own process (never beside JAX).

What TRL's PRMTrainer runs: `Qwen2ForTokenClassification` (num_labels=2, token cross-entropy at the
step markers, -100 elsewhere), pure bf16 weights, AdamW, SDPA attention; eager and `torch.compile`.
The implicit-PRM step: a `Qwen2ForCausalLM` policy forward+backward with full-vocabulary log-probs
(log_softmax in float32 over [B, L, V]) plus a frozen reference forward under no_grad. Sampling:
`generate(do_sample=True, top_p, min_new_tokens=max_new_tokens)`. Scoring: the token-classification
forward under inference_mode. Models are built from a config with random weights: nothing is
downloaded.

Usage: python benchmarks/peer_hf.py TASK[,TASK...] [--tiny] [--steps N] [--warmup N]
TASKs: prm_eager, prm_compile, implicit_eager, generate, score. Prints one `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TASKS = ("prm_eager", "implicit_eager", "prm_compile", "generate", "score")


def hf_config(shape: common.Shape, num_labels: int = 2):
    """Returns a transformers Qwen2Config with `shape`'s dimensions and SDPA attention."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=shape.vocab,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.mlp,
        tie_word_embeddings=shape.tied,
        num_labels=num_labels,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        attn_implementation="sdpa",
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        use_cache=False,
    )


def build(cls, shape, device, num_labels=2):
    """Returns a randomly initialised bf16 model of class `cls` on `device`, in train mode."""
    import torch

    cfg = hf_config(shape, num_labels)
    torch.manual_seed(0)
    with torch.device(device):
        model = cls(cfg)
    return model.to(dtype=torch.bfloat16)


def _sync(device):
    import torch

    if device == "cuda":
        return lambda _x: torch.cuda.synchronize()
    return lambda _x: None


def _peak(device):
    import torch

    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else None


def _reset(device):
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def make_prm_batch(shape, batch, seq, steps_per_row, device, seed=0):
    """Returns (input_ids, attention_mask, labels) with labels 0/1 at random markers, -100 elsewhere."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, shape.vocab, (batch, seq), generator=g)
    labels = torch.full((batch, seq), -100, dtype=torch.long)
    for b in range(batch):
        pos = torch.randperm(seq - 1, generator=g)[:steps_per_row] + 1
        labels[b, pos] = torch.randint(0, 2, (steps_per_row,), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    return ids.to(device), mask.to(device), labels.to(device)


def bench_prm(shape, batch, seq, device, compiled, steps, warmup, steps_per_row):
    """Returns the timing of a TRL-style PRM train step (forward, token CE, backward, AdamW)."""
    import torch
    from transformers import Qwen2ForTokenClassification

    _reset(device)
    model = build(Qwen2ForTokenClassification, shape, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0, fused=(device == "cuda"))
    fwd = torch.compile(model) if compiled else model
    ids, mask, labels = make_prm_batch(shape, batch, seq, steps_per_row, device)

    def step():
        loss = fwd(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    first = step()
    _sync(device)(first)
    first_s = time.perf_counter() - t0
    loss0 = first.detach().item()
    t = common.time_steps(step, _sync(device), warmup, steps, "peer prm")
    out = {
        "first_step_s": first_s,
        "loss_first": loss0,
        "peak_bytes": _peak(device),
        "n_params": sum(p.numel() for p in model.parameters()),
        **t,
    }
    del model, opt, fwd
    return out


def bench_implicit(shape, batch, seq, device, steps, warmup, beta=0.05):
    """Returns the timing of an implicit-PRM CE step with full-vocabulary float32 log-probs."""
    import torch
    import torch.nn.functional as F
    from transformers import Qwen2ForCausalLM

    _reset(device)
    policy = build(Qwen2ForCausalLM, shape, device).train()
    ref = build(Qwen2ForCausalLM, shape, device).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.0, fused=(device == "cuda"))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, shape.vocab, (batch, seq), generator=g).to(device)
    mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    resp = torch.zeros(batch, seq - 1, device=device)
    resp[:, seq // 4 :] = 1.0  # the response: the last three quarters of each row
    outcome = torch.randint(0, 2, (batch,), generator=g).float().to(device)

    def logp_of(model):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)

    def step():
        with torch.no_grad():
            ref_lp = logp_of(ref)
        lp = logp_of(policy)
        r = beta * ((lp - ref_lp) * resp).sum(-1)
        loss = F.binary_cross_entropy_with_logits(r, outcome)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    loss0 = step().detach().item()  # policy == reference at the start: r = 0, loss = ln 2
    t = common.time_steps(step, _sync(device), warmup, steps, "peer implicit")
    out = {
        "loss_first": loss0,
        "peak_bytes": _peak(device),
        "n_params": sum(p.numel() for p in policy.parameters()),
        **t,
    }
    del policy, ref, opt
    return out


def bench_generate(shape, batch, prompt, new, device, iters, top_p=0.95):
    """Returns the timing of `generate` sampling exactly `new` tokens per row (EOS suppressed)."""
    import torch
    from transformers import Qwen2ForCausalLM

    _reset(device)
    model = build(Qwen2ForCausalLM, shape, device).eval()
    model.config.use_cache = True
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(2, shape.vocab, (batch, prompt), generator=g).to(device)
    mask = torch.ones_like(ids)
    sync = _sync(device)

    def gen(n):
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                top_p=top_p,
                temperature=1.0,
                top_k=0,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=0,
                eos_token_id=1,
                use_cache=True,
            )

    sync(gen(min(8, new)))  # warm-up: kernels, allocator, handles
    t = common.time_steps(lambda: gen(new), sync, 0, iters, "peer generate")
    out_ids = gen(new) if device != "cuda" else None  # cheap check of the count on the CPU only
    if out_ids is not None and out_ids.shape[1] != prompt + new:
        raise RuntimeError(f"generate returned {out_ids.shape[1] - prompt} new tokens, wanted {new}")
    res = {"new_tokens": batch * new, "peak_bytes": _peak(device), **t}
    del model
    return res


def bench_score(shape, batch, seq, device, steps, warmup):
    """Returns the timing of a token-classification forward (the peer's verifier scoring)."""
    import torch
    from transformers import Qwen2ForTokenClassification

    _reset(device)
    model = build(Qwen2ForTokenClassification, shape, device).eval()
    ids, mask, _ = make_prm_batch(shape, batch, seq, 1, device, seed=3)

    def fwd():
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask).logits.softmax(-1)[..., 1]

    t = common.time_steps(fwd, _sync(device), warmup, steps, "peer score")
    res = {"peak_bytes": _peak(device), **t}
    del model
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", help="comma-separated: " + ",".join(TASKS))
    p.add_argument("--tiny", action="store_true", help="tiny shape on the CPU (what the test runs)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--gen-batch", type=int, default=None)
    p.add_argument("--gen-prompt", type=int, default=None)
    p.add_argument("--gen-new", type=int, default=None)
    p.add_argument("--gen-iters", type=int, default=None)
    p.add_argument("--score-batch", type=int, default=None)
    p.add_argument("--score-seq", type=int, default=None)
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        p.error(f"unknown task(s) {bad}; choose from {TASKS}")

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    tiny = args.tiny
    shape = common.TINY if tiny else common.QWEN25_05B
    d = lambda v, tiny_v, full_v: v if v is not None else (tiny_v if tiny else full_v)
    batch, seq = d(args.batch, 2, 8), d(args.seq, 64, 2048)
    steps, warmup = d(args.steps, 2, 10), d(args.warmup, 1, 3)
    results = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "tasks": {},
    }
    for task in tasks:
        t0 = time.perf_counter()
        try:
            if task in ("prm_eager", "prm_compile"):
                if task == "prm_compile" and tiny:
                    # torch.compile on this 2-core CPU costs ~1 min of inductor C++ builds: skipped.
                    res = {"skipped": "torch.compile is not run in --tiny (CPU) mode"}
                else:
                    res = bench_prm(
                        shape, batch, seq, device, task == "prm_compile", steps, warmup, steps_per_row=d(None, 4, 32)
                    )
                res.update(tokens=batch * seq)
            elif task == "implicit_eager":
                res = bench_implicit(shape, batch, seq, device, steps, warmup)
                res.update(tokens=batch * seq)
            elif task == "generate":
                res = bench_generate(
                    shape,
                    d(args.gen_batch, 4, 64),
                    d(args.gen_prompt, 16, 256),
                    d(args.gen_new, 8, 256),
                    device,
                    d(args.gen_iters, 1, 2),
                )
            else:
                sb, ss = d(args.score_batch, 4, 64), d(args.score_seq, 64, 1024)
                res = bench_score(shape, sb, ss, device, steps, warmup)
                res.update(tokens=sb * ss)
        except Exception as e:  # one failed task (an OOM, say) must not lose the others' numbers
            res = {"error": f"{type(e).__name__}: {e}"[:2000]}
        res["wall_s"] = time.perf_counter() - t0
        results["tasks"][task] = res
        print(
            f"[peer] {task}: " + (res.get("error") or res.get("skipped") or f"median {res.get('median_s', 0):.4f}s"),
            file=sys.stderr,
            flush=True,
        )
        gc.collect()
        common.emit(results)  # cumulative after every task: a timeout keeps what finished
    return 0


if __name__ == "__main__":
    sys.exit(main())
