"""Demo stage 1: the policy, a small transformer taught the arithmetic task by SFT.

Trained briefly on purpose (as `prm-jax demo` does), and on some corrupted solutions: the policy must
make real mistakes, so that Monte-Carlo labelling (stage 2) finds wrong steps and verifier-guided
search (stage 4) has something to fix. The config is the demo config's `policy` section
(prm_jax/configs/demo.py).

    prm-jax train --config experiments/arith_policy_sft.py:demo --workdir runs/arith/policy
    # this CPU, about a minute:
    prm-jax train --config experiments/arith_policy_sft.py:tiny --workdir /tmp/arith_policy

Next: experiments/arith_mc_label.py reads `runs/arith/policy`. Variants: tiny, demo.
"""

from prm_jax.configs import demo

VARIANTS = ("tiny", "demo")


def get_config(arg=None):
    arg = arg or "tiny"
    if arg not in VARIANTS:
        raise ValueError(f"arith_policy_sft.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    c = demo.get_config("full").policy  # what `prm-jax demo` trains
    if arg == "tiny":
        c.train.update(steps=20, batch_size=4, log_every=1, ckpt_every=20, eval_every=20, eval_batches=1)
        c.data.eval_frac = 0.05  # in-training evaluation on problems held out by hash
    return c
