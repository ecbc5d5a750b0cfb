"""`prm-jax fit-check --config PATH[:ARG] --devices N [--mesh data=..,fsdp=..,tensor=..] [--hbm-gb 16,80]`.

Compiles the train step for N simulated CPU devices with abstract inputs and prints per-device memory
and FLOPs with a fits / does-not-fit verdict. The device count must be fixed before jax starts, so
the command re-executes itself in a child process with XLA_FLAGS set (unless it already is that child).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ACCEPTS_EXTRA = True
_CHILD = "PRM_JAX_FITCHECK_CHILD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment file with get_config(arg): PATH[:ARG]")
    parser.add_argument("--devices", type=int, required=True, help="number of simulated devices")
    parser.add_argument("--mesh", default=None, help="e.g. data=1,fsdp=-1,tensor=1 (overrides config.mesh.shape)")
    parser.add_argument("--hbm-gb", default="16,80", help="device memory sizes to judge against, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def parse_mesh(text: str) -> dict:
    """Returns {'data': 2, ...} from 'data=2,fsdp=-1'."""
    out = {}
    for part in filter(None, text.split(",")):
        k, sep, v = part.partition("=")
        if not sep:
            raise ValueError(f"--mesh part {part!r} must be axis=size")
        out[k.strip()] = int(v)
    return out


def run(args: argparse.Namespace) -> int:
    if os.environ.get(_CHILD) != str(args.devices):
        env = dict(os.environ)
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={args.devices}"])
        env["JAX_PLATFORMS"] = "cpu"
        env[_CHILD] = str(args.devices)
        return subprocess.call([sys.executable, "-m", "prm_jax.cli", "fit-check", *_argv(args)], env=env)

    import jax

    from prm_jax import config as cfg_lib
    from prm_jax import fitcheck

    if jax.device_count() != args.devices:
        raise RuntimeError(
            f"fit-check wanted {args.devices} devices, jax has {jax.device_count()} "
            f"(XLA_FLAGS={os.environ.get('XLA_FLAGS')!r})"
        )
    config = cfg_lib.load_config(args.config)
    cfg_lib.apply_overrides(config, getattr(args, "extra", []) or [])
    if args.mesh:
        config.mesh.shape = parse_mesh(args.mesh)
    vocab = None
    if config.model.vocab_size == "tokenizer" and not config.model.hf_path:
        from prm_jax import loop

        vocab = loop.make_tokenizer(config).vocab_size
    hbm = tuple(float(x) for x in str(args.hbm_gb).split(","))
    result = fitcheck.fit_check(config, hbm_gb=hbm, vocab_size=vocab)
    print(json.dumps(result) if args.json else fitcheck.format_result(result))
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    out = ["--config", args.config, "--devices", str(args.devices), "--hbm-gb", str(args.hbm_gb)]
    if args.mesh:
        out += ["--mesh", args.mesh]
    if args.json:
        out.append("--json")
    return out + list(getattr(args, "extra", []) or [])
