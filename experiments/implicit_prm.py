"""Llama-3.1-8B implicit PRM (Free Process Rewards without Process Labels): outcome labels only.

r(y) = beta * sum_t log pi(y_t) / pi_ref(y_t); CE: BCE(sigmoid(r), correct); DPO: -log sigmoid(r_w - r_l).
Step rewards come for free at evaluation: q_t = beta * (log-ratio summed up to the end of step t).
The frozen reference is the initial checkpoint (`init.ref_hf_path`, default = `init.hf_path`).

    # one 8xH100 node (policy + frozen reference + AdamW state, FSDP over 8):
    prm-jax train --config experiments/implicit_prm.py:ce --workdir runs/implicit_ce \
        --config.init.hf_path=/ckpt/Llama-3.1-8B-Instruct --config.data.path=/data/outcomes.jsonl
    prm-jax train --distributed --config experiments/implicit_prm.py:dpo,v5p64 --workdir gs://BUCKET/implicit_dpo \
        --config.init.hf_path=gs://BUCKET/Llama-3.1-8B-Instruct --config.data.path=gs://BUCKET/outcomes.jsonl
    prm-jax fit-check --config experiments/implicit_prm.py:ce --devices 8 --config.init.hf_path=
    # beta ablation (0.01 .. 0.2; the authors use 0.05):
    prm-jax sweep --config experiments/implicit_prm.py:ce --workdir runs/beta --print-commands
    # this CPU: tiny random model, char tokenizer (outcome fixture for CE, arithmetic pairs for DPO)
    prm-jax train --config experiments/implicit_prm.py:tiny_ce --workdir /tmp/implicit_tiny
    prm-jax sweep --config experiments/implicit_prm.py:tiny_ce --workdir /tmp/beta_sweep

Argument: `VARIANT[,MESH]`, VARIANT in ce | dpo | tiny_ce | tiny_dpo, MESH in h100x8 (default) | v5p64.
Data: outcome jsonl (`prompt`, `response` or `steps`, `correct`); DPO pairs a correct and an incorrect
response of the same prompt (`data.pair=True`).
"""

from pathlib import Path

import ml_collections

from prm_jax.configs import base

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VARIANTS = ("ce", "dpo", "tiny_ce", "tiny_dpo")
MESHES = {"h100x8": dict(data=1, fsdp=8, tensor=1), "v5p64": dict(data=2, fsdp=16, tensor=1)}  # v5p-64: 32 chips


def get_config(arg=None):
    variant, _, mesh = (arg or "ce").partition(",")
    mesh = mesh or "h100x8"
    if variant not in VARIANTS or mesh not in MESHES:
        raise ValueError(
            f"implicit_prm.py: bad variant {arg!r}; use VARIANT[,MESH], VARIANT in {VARIANTS}, MESH in {tuple(MESHES)}"
        )
    tiny = variant.startswith("tiny")
    dpo = variant.endswith("dpo")
    c = base.get_config()
    c.objective = "implicit_dpo" if dpo else "implicit_ce"
    c.model.update(
        preset="llama-3.1-8b",
        dtype="bfloat16",
        remat="full",
        attention_impl="cudnn" if mesh == "h100x8" else "xla",
        max_seq_len=2048,
        score_head=False,
    )
    ckpt = ml_collections.FieldReference(None if tiny else "/path/to/Llama-3.1-8B-Instruct", field_type=str)
    c.init.hf_path = ckpt
    c.init.ref_hf_path = ckpt
    c.loss.update(beta=0.05, logprob_chunk=512)
    c.data.update(
        source="outcome_jsonl",
        path="/path/to/outcomes.jsonl",
        marker="\n\n",
        pack=False,  # outcome labels are per row: no packing for the implicit PRM
        pair=dpo,
        eval_frac=0.05,
    )
    c.data.tokenizer = "char" if tiny else ckpt
    c.optim.update(lr=5e-7, warmup=30, accum_steps=4)
    c.train.update(
        steps=1000,
        batch_size=64,
        seq_len=2048,
        max_steps=32,
        ckpt_every=100,
        eval_every=100,
        eval_batches=8,
        log_every=10,
    )
    c.mesh.shape = MESHES[mesh]
    if tiny:
        c.model = base.model_section()
        c.model.update(preset="tiny", vocab_size="tokenizer", max_seq_len=256)
        c.init.hf_path = None
        if dpo:
            c.data.update(source="arith", marker=None)  # the fixture has no same-prompt pairs; the arith stream does
            c.data.arith.corrupt_prob = 0.5
        else:
            c.data.update(path=str(FIXTURES / "outcome.jsonl"), marker="<step>")
        c.loss.beta = 0.5  # random init, no SFT reference: see arith_prm.py
        c.train.update(
            steps=20, batch_size=2, seq_len=160, max_steps=8, ckpt_every=0, eval_every=20, eval_batches=1, log_every=1
        )
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.update(lr=1e-3, warmup=2, accum_steps=1)
        c.mesh.shape = dict(data=-1, fsdp=1, tensor=1)
    return c


def get_hyper(h):
    """beta of the implicit reward: the authors' 0.05 against smaller and larger."""
    return h.sweep("loss.beta", [0.01, 0.05, 0.2])


SWEEP_METRICS = ("eval/loss", "eval/outcome_acc", "eval/outcome_auroc")
