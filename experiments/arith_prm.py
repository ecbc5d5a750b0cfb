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
`prm-jax fit-check --config experiments/arith_prm.py:implicit_ce,llama8b --devices 64`).

The config layout every training config follows (`prm_jax/train.py`, `prm_jax/loop.py` read it):
  objective   'bce' | 'orm' | 'implicit_ce' | 'implicit_dpo' | 'pav' | 'sft'
  model       preset: a model.PRESETS name; hf_path: a local HF folder instead; any other key that is
              not None overrides a ModelConfig field (vocab_size None = the tokenizer's)
  loss        beta (implicit PRM, 0.05 in the paper), pav_mode ('bce' | 'mse_adv'), logprob_chunk
  data        passed to prm_jax.data.pipeline.make_train_iterator (source, tokenizer, marker, pack,
              pair, arith: ArithConfig fields, ...); oracle_q: PAV targets from exact arith labels
              (q_t = 1 while every step so far is right, v0 = 1), for the tiny PAV variant only
  optim       lr, warmup, decay ('cosine' | 'linear' | 'constant'), final_frac, clip, weight_decay,
              b1, b2, accum_steps (micro-batches per step, scanned), head_only_steps
  train       steps, batch_size (global), seq_len, max_steps (steps per row), seed, log_every,
              ckpt_every (0: no checkpoints), keep_ckpts, eval_every (0: none), eval_batches,
              compiler_options (XLA options for the jitted steps, optional)
  mesh        shape: dict(data=-1, fsdp=1, tensor=1) (-1 fills the devices); rules: list of
              (logical axis, mesh axes) pairs, None for sharding.DEFAULT_RULES
  init        hf_path / workdir: initial params (HF folder or a previous run's latest checkpoint);
              ref_hf_path / ref_workdir: the implicit PRM's frozen reference (default: the initial params)
"""

import ml_collections

OBJECTIVES = ("bce", "orm", "implicit_ce", "implicit_dpo", "pav", "sft")
SIZES = {
    "tiny": dict(
        preset="tiny",
        vocab_size=None,
        d_model=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=16,
        mlp_dim=128,
        max_seq_len=256,
    ),
    "small": dict(preset="small", vocab_size=None, max_seq_len=256),
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
    c = ml_collections.ConfigDict()
    c.objective = objective
    c.model = ml_collections.ConfigDict(SIZES[size])
    c.loss = ml_collections.ConfigDict(dict(beta=0.05, pav_mode="bce", logprob_chunk=1024))
    c.data = ml_collections.ConfigDict(
        dict(
            eval_frac=0.0,  # share of problems held out (by hash) for in-training evaluation; or eval_path=FILE
            source="arith",
            tokenizer="char",
            marker=None,
            pack=False,
            pair=objective == "implicit_dpo",
            shuffle=True,
            oracle_q=objective == "pav",
            arith=ml_collections.ConfigDict(dict(corrupt_prob=0.5)),
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=3e-3,
            warmup=10,
            decay="cosine",
            final_frac=0.1,
            clip=1.0,
            weight_decay=0.01,
            b1=0.9,
            b2=0.95,
            accum_steps=1,
            head_only_steps=0,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=60,
            batch_size=16,
            seq_len=192,
            max_steps=8,
            seed=0,
            log_every=1,
            ckpt_every=30,
            keep_ckpts=2,
            eval_every=0,
            eval_batches=2,
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(shape=dict(data=-1, fsdp=1, tensor=1), rules=None))
    c.init = ml_collections.ConfigDict(dict(hf_path=None, ref_hf_path=None, workdir=None, ref_workdir=None))
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
