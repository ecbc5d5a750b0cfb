"""Demo stage 2: sample solutions from the SFT policy and label their steps by Monte-Carlo rollouts.

Math-Shepherd labels (K rollouts after each step prefix: soft = fraction reaching the gold answer, hard
= any), OmegaPRM binary search for the first error (its rollouts counted against full MC), and PAV
targets: the PROVER's Q after each step and V from the bare question. Writes WORKDIR/labels/train.jsonl
(the step-wise jsonl experiments/arith_verifier.py trains on) and WORKDIR/labels/stats.json.
Runs `prm_jax.demo.stage_labels` with these settings (a Python stage: `python -m prm_jax.sweep`).

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

import ml_collections

VARIANTS = ("demo", "prover_temp", "tiny")


def get_config(arg=None):
    arg = arg or "demo"
    if arg not in VARIANTS:
        raise ValueError(f"arith_mc_label.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.stage = "mc_label"
    c.policy_workdir = "runs/arith/policy"  # experiments/arith_policy_sft.py output
    c.settings = "full"  # prm_jax.demo.SETTINGS entry the rest overrides
    c.label_problems = 160  # problems sampled from the arithmetic task (seed 1)
    c.label_samples = 2  # policy solutions per problem
    c.k = 8  # MC rollouts per step prefix (Math-Shepherd N)
    c.prover = "bok:4"  # 'bok:K' | 'temperature:T' | 'same'
    if arg == "tiny":
        c.policy_workdir = "/tmp/arith_policy"
        c.settings = "quick"
        c.update(dict(label_problems=4, label_samples=1, k=2))
    return c


def get_hyper(h):
    """The prover ablation of Rewarding Progress: the policy at several temperatures vs Best-of-4."""
    return h.sweep("prover", ["temperature:0.5", "temperature:1.0", "temperature:1.5", "bok:4"])


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
    from prm_jax import demo

    _link(config.policy_workdir, os.path.join(workdir, "policy"))
    s = dict(
        demo.SETTINGS[config.settings],
        label_problems=config.label_problems,
        label_samples=config.label_samples,
        k=config.k,
        prover=config.prover,
    )
    return demo.stage_labels(workdir, s, print)


SWEEP_METRICS = ("omega_first_error_exact_match", "mc_hard_first_error_exact_match", "mc_rollouts")
