"""The `prm-jax` command: parses arguments and dispatches to one module per subcommand.

Each subcommand lives in `prm_jax/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported lazily so that `prm-jax info` does not pay for the data stack.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "info": ("prm_jax.commands.info", "versions, devices and backend"),
    "data": ("prm_jax.commands.data", "dataset statistics and preparation"),
    "train": ("prm_jax.commands.train", "train a verifier or policy from an experiment config"),
    "fit-check": ("prm_jax.commands.fitcheck", "compile a train step for N simulated devices; memory and FLOPs"),
    "search": ("prm_jax.commands.search", "reward-guided search (best-of-N, beam, PAV beam)"),
    "evaluate": ("prm_jax.commands.evaluate", "ProcessBench and best-of-N evaluation"),
    "demo": ("prm_jax.commands.demo", "the end-to-end arithmetic-task demo (the main job)"),
    "sweep": ("prm_jax.commands.sweep", "run or list a hyper-parameter sweep and gather its results"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Returns the top-level parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="prm-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    if extra and not getattr(module, "ACCEPTS_EXTRA", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(module, "ACCEPTS_EXTRA", False):
        args.extra = extra
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
