"""Verifiers (and the SFT policy) on the synthetic arithmetic task: one variant per objective.

    # about a minute on a 2-core CPU:
    prm-jax train --config experiments/arith_prm.py:bce,tiny --workdir runs/arith_bce
    prm-jax train --config experiments/arith_prm.py:implicit_ce,tiny --workdir runs/arith_implicit \
        --config.init.workdir=runs/arith_sft --config.init.ref_workdir=runs/arith_sft
    # memory / FLOPs of the same step on 8 simulated devices (nothing allocated):
    prm-jax fit-check --config experiments/arith_prm.py:bce,tiny --devices 8

Argument: `OBJECTIVE[,SIZE]`, OBJECTIVE in bce | orm | implicit_ce | implicit_dpo | pav | sft,
SIZE in tiny (default, CPU) | small | qwen7b | llama8b (the last two: Qwen2.5-Math-7B / Llama-3.1-8B
shapes at seq 4096, one sequence per device, FSDP over all devices, for the fit check:
`prm-jax fit-check --config experiments/arith_prm.py:implicit_ce,llama8b --devices 64 --mesh data=1,fsdp=8,tensor=8`).

Every key and its default is in prm_jax/configs/base.py (one line of comment each); this file
changes only what differs. `prm-jax train ... --config.a.b=v` overrides any of them; a key the base
does not have is an error naming the nearest one.
"""

from prm_jax.configs import base

OBJECTIVES = ("bce", "orm", "implicit_ce", "implicit_dpo", "pav", "sft")
SIZES = {
    "tiny": dict(preset="tiny", vocab_size="tokenizer"),
    "small": dict(preset="small", vocab_size="tokenizer"),
    # Real-scale shapes for `prm-jax fit-check` only (their own vocabularies, bf16 compute, remat).
    "qwen7b": dict(preset="qwen2.5-math-7b", dtype="bfloat16", remat="full", max_seq_len=4096),
    "llama8b": dict(preset="llama-3.1-8b", dtype="bfloat16", remat="full", max_seq_len=4096),
}


def get_config(arg=None):
    objective, _, size = (arg or "bce,tiny").partition(",")
    size = size or "tiny"
    if objective not in OBJECTIVES or size not in SIZES:
        raise ValueError(
            f"arith_prm.py: bad variant {arg!r}; use OBJECTIVE[,SIZE] with OBJECTIVE in "
            f"{OBJECTIVES} and SIZE in {tuple(SIZES)}"
        )
    c = base.get_config()
    c.objective = objective
    c.model.update(SIZES[size])
    c.data.update(tokenizer="char", pair=objective == "implicit_dpo", oracle_q=objective == "pav")
    c.data.arith.corrupt_prob = 0.5
    c.optim.update(lr=3e-3, warmup=10, weight_decay=0.01)
    c.train.update(steps=60, seq_len=192, ckpt_every=30, keep_ckpts=2, eval_batches=2)
    if objective in ("implicit_ce", "implicit_dpo"):
        # From a random init the log-ratio starts at 0; a larger beta than the paper's 0.05 makes
        # the tiny run move within a minute. With a trained SFT reference use 0.05.
        c.loss.beta = 0.5
        c.optim.lr = 1e-3
    if objective == "sft":
        c.data.arith.corrupt_prob = 0.0  # the policy imitates gold solutions
    if size in ("qwen7b", "llama8b"):
        c.train.update(steps=1000, batch_size=8, seq_len=4096, max_steps=64, ckpt_every=100)
        c.mesh.shape = dict(data=1, fsdp=-1, tensor=1)
        c.optim.update(lr=1e-6, warmup=50)
        c.loss.beta = 0.05
    if size == "small":
        c.train.update(steps=500, batch_size=32, ckpt_every=100, eval_every=100)
        c.data.eval_frac = 0.05  # evaluation reads problems held out of training
        c.optim.update(lr=1e-3, warmup=50)
    return c
