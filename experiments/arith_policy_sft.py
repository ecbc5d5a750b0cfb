"""Demo stage 1: the policy, a small transformer taught the arithmetic task by SFT.

Trained briefly on purpose (as `prm-jax demo` does), and on some corrupted solutions: the policy must
make real mistakes, so that Monte-Carlo labelling (stage 2) finds wrong steps and verifier-guided
search (stage 4) has something to fix. The task settings are the demo's (prm_jax.demo.ARITH,
prm_jax.demo.SFT_CORRUPT).

    prm-jax train --config experiments/arith_policy_sft.py:demo --workdir runs/arith/policy
    # this CPU, about a minute:
    prm-jax train --config experiments/arith_policy_sft.py:tiny --workdir /tmp/arith_policy

Next: experiments/arith_mc_label.py reads `runs/arith/policy`. Variants: tiny, demo.
"""

import ml_collections

from prm_jax.demo import ARITH, SETTINGS, SFT_CORRUPT

SIZES = {
    "tiny": dict(preset="tiny", vocab_size=None, max_seq_len=256),
    "demo": dict(preset="tiny", vocab_size=None, max_seq_len=256),  # what `prm-jax demo` trains
}


def get_config(arg=None):
    arg = arg or "tiny"
    if arg not in SIZES:
        raise ValueError(f"arith_policy_sft.py: unknown variant {arg!r}; choose one of {tuple(SIZES)}")
    c = ml_collections.ConfigDict()
    c.objective = "sft"
    c.model = ml_collections.ConfigDict(SIZES[arg])
    c.loss = ml_collections.ConfigDict(dict(logprob_chunk=1024))
    c.data = ml_collections.ConfigDict(
        dict(
            eval_frac=0.05,  # share of problems held out (by hash) for in-training evaluation; or eval_path=FILE
            source="arith",
            tokenizer="char",
            marker=None,
            pack=False,
            pair=False,
            shuffle=True,
            add_eos=True,
            arith=ml_collections.ConfigDict(dict(ARITH, corrupt_prob=SFT_CORRUPT)),
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=3e-3,
            warmup=10,
            decay="constant",
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
            steps=SETTINGS["full"]["policy_steps"],
            batch_size=SETTINGS["full"]["policy_batch"],
            seq_len=160,
            max_steps=8,
            seed=0,
            log_every=10,
            ckpt_every=200,
            keep_ckpts=1,
            eval_every=200,
            eval_batches=2,
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(shape=dict(data=-1, fsdp=1, tensor=1), rules=None))
    c.init = ml_collections.ConfigDict(dict(hf_path=None, ref_hf_path=None, workdir=None, ref_workdir=None))
    if arg == "tiny":
        c.train.update(steps=20, batch_size=4, log_every=1, ckpt_every=20, eval_every=20, eval_batches=1)
    return c
