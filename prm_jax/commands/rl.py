"""`prm-jax rl --config PATH[:ARG] --workdir DIR [--config.key=value ...]`: RL with a PRM reward source.

    prm-jax rl --config experiments/arith_rl.py:prm_min --workdir runs/rl/prm_min
    prm-jax rl --config experiments/arith_rl.py:outcome,tiny --workdir /tmp/rl --config.policy_workdir=/tmp/pol

Runs `prm_jax.rl_loop.run`: per iteration fresh problems, G samples each, rewards from the config's
`source` (outcome, prm_sum, prm_min, pav, prime), leave-one-out advantages, one policy-gradient step;
metrics.jsonl and TensorBoard events per iteration, final.json with held-out accuracy against
samples seen. Checkpoints every `ckpt_every` iterations and at the end: the same command on the same
WORKDIR resumes a killed or SIGTERM'd run where its last checkpoint left it.
"""

from __future__ import annotations

import argparse

ACCEPTS_EXTRA = True  # --config.key=value overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="an RL stage config PATH[:ARG] (experiments/arith_rl.py)")
    parser.add_argument("--workdir", required=True, help="metrics.jsonl, TensorBoard events, final.json")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument(
        "--allow-config-change", action="store_true", help="resume a run whose settings changed (beyond its budget)"
    )


def run(args: argparse.Namespace) -> int:
    from prm_jax import config as cfg_lib
    from prm_jax import jsonio, rl_loop

    config = cfg_lib.apply_overrides(cfg_lib.load_config(args.config), getattr(args, "extra", []) or [])
    if config.get("stage") != "rl":
        raise ValueError(f"{args.config} is not an RL stage config (no `stage = 'rl'`): see experiments/arith_rl.py")
    final = rl_loop.run(
        config, args.workdir, progress=not args.no_progress, allow_config_change=args.allow_config_change
    )
    print(jsonio.dumps(final))
    return 0
