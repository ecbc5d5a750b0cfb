"""`prm-jax train --config PATH[:ARG] --workdir DIR [--config.key=value ...]`: train from a config.

Any config key is set from the command line after the options, `--config.SECTION.KEY=VALUE`:

    prm-jax train --config experiments/arith_prm.py:bce,tiny --workdir runs/bce \
        --config.train.steps=200 --config.optim.lr=3e-4 --config.train.seed=1

(`--print-config` shows every key; a misspelled key is an error naming the nearest one.)
A checkpoint is written at the end of the run (and every `train.ckpt_every` steps when > 0).
Resumes from the latest checkpoint in DIR. Exit code 0 on success and on SIGTERM (after saving);
1 with an error naming the step when a loss goes NaN / inf.
"""

from __future__ import annotations

import argparse
import sys

ACCEPTS_EXTRA = True  # --config.key=value overrides arrive in args.extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment file with get_config(arg): PATH[:ARG]")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, TensorBoard events")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--print-config", action="store_true", help="print the final config and exit")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume although settings other than the model / objective changed (listed as a warning)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host: same command on every host)",
    )


def run(args: argparse.Namespace) -> int:
    from prm_jax import config as cfg_lib

    config = cfg_lib.load_config(args.config)
    cfg_lib.apply_overrides(config, getattr(args, "extra", []) or [])
    if args.print_config:
        print(cfg_lib.to_json(config))
        return 0
    if args.distributed:
        import jax

        jax.distributed.initialize()
    from prm_jax import jsonio, loop

    try:
        final = loop.run(
            config, args.workdir, progress=not args.no_progress, allow_config_change=args.allow_config_change
        )
    except loop.NonFiniteLossError as e:
        print(f"prm-jax train: {e}", file=sys.stderr)
        return 1
    print(jsonio.dumps({k: v for k, v in final.items() if isinstance(v, (int, float, bool, str))}))
    return 0
