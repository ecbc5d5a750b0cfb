"""Demo stage 2: sample solutions from the SFT policy and label their steps by Monte-Carlo rollouts.

Math-Shepherd labels (K rollouts after each step prefix: soft = fraction reaching the gold answer, hard
= any), OmegaPRM binary search for the first error (its rollouts counted against full MC), and PAV
targets: the PROVER's Q after each step and V from the bare question. Writes WORKDIR/labels/train.jsonl
(the step-wise jsonl experiments/arith_verifier.py trains on), val.jsonl and stats.json. The config is
the demo config (prm_jax/configs/demo.py; its `labelling` section) run by `prm_jax.demo.stage_labels`
(a Python stage: `prm-jax sweep --once`).

    prm-jax sweep --once --config experiments/arith_mc_label.py:demo --workdir runs/arith/mc \
        --config.policy_workdir=runs/arith/policy
    # prover temperature ablation (PAV targets from the policy sampled at T; Best-of-4 for reference):
    prm-jax sweep --config experiments/arith_mc_label.py:prover_temp --workdir runs/arith/prover_t \
        --config.policy_workdir=runs/arith/policy
    # this CPU (a tiny policy from experiments/arith_policy_sft.py:tiny, a handful of problems):
    prm-jax sweep --once --config experiments/arith_mc_label.py:tiny --workdir /tmp/arith_mc \
        --config.policy_workdir=/tmp/arith_policy

Variants: demo, prover_temp (demo settings; its get_hyper sweeps the prover), tiny.
"""

import os

from prm_jax.configs import demo

VARIANTS = ("demo", "prover_temp", "tiny")


def get_config(arg=None):
    arg = arg or "demo"
    if arg not in VARIANTS:
        raise ValueError(f"arith_mc_label.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    c = demo.get_config("quick" if arg == "tiny" else "full")
    c.stage = "mc_label"
    c.policy_workdir = "/tmp/arith_policy" if arg == "tiny" else "runs/arith/policy"  # arith_policy_sft.py output
    c.labelling.update(problems=160, samples=2, k=8)  # Math-Shepherd's N = 8 rollouts per step prefix
    if arg == "tiny":
        c.labelling.update(problems=4, samples=1, k=2)
    return c


def get_hyper(h):
    """The prover ablation of Rewarding Progress: the policy at several temperatures vs Best-of-4."""
    return h.sweep("labelling.prover", ["temperature:0.5", "temperature:1.0", "temperature:1.5", "bok:4"])


def _link(src: str, dst: str) -> None:
    """Makes `dst` point at the finished run `src` (the demo stages read fixed sub-folders)."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src} does not exist: run the stage that writes it first")
    if os.path.lexists(dst):
        if os.path.realpath(dst) != os.path.realpath(src):
            raise FileExistsError(f"{dst} exists and is not {src}")
        return
    os.symlink(os.path.abspath(src), dst)


def run(config, workdir):
    """Labels solutions into WORKDIR/labels/; returns the labelling stats (rollouts, match rates)."""
    from prm_jax import demo as demo_lib

    os.makedirs(workdir, exist_ok=True)
    _link(config.policy_workdir, os.path.join(workdir, "policy"))
    return demo_lib.stage_labels(workdir, config, print)


SWEEP_METRICS = ("omega_first_error_exact_match", "mc_hard_first_error_exact_match", "mc_rollouts")
