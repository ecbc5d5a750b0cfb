"""`prm-jax fit-check --config PATH[:ARG] --devices N [--mesh data=..,fsdp=..,tensor=..] [--hbm-gb 16,80]`.

Compiles the train step for N simulated CPU devices with abstract inputs and prints per-device memory
and FLOPs with a fits / does-not-fit verdict. With `--family NAME --preset P` (or `--hf-path DIR`,
its config.json) instead of `--config` it compiles scoring one batch with a PRM family's read-out
(`prm_jax.heads`), e.g. a 72B Qwen PRM at seq 4096:

    prm-jax fit-check --family qwen_prm --preset qwen2.5-math-72b --seq-len 4096 --devices 8 --mesh fsdp=8 The device count must be fixed before jax starts, so
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
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="experiment file with get_config(arg): PATH[:ARG] (the train step)")
    what.add_argument("--family", help="a PRM family of prm_jax.heads: check scoring with it instead")
    parser.add_argument("--preset", help="--family: the model (a prm_jax.model preset, e.g. qwen2.5-math-72b)")
    parser.add_argument("--hf-path", help="--family: the model from this HF folder's config.json instead")
    parser.add_argument("--batch-size", type=int, default=8, help="--family: solutions per batch")
    parser.add_argument("--seq-len", type=int, default=4096, help="--family: tokens per solution")
    parser.add_argument("--dtype", default="bfloat16", help="--family: weight and compute dtype")
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
    if args.family:
        from prm_jax import model

        if getattr(args, "extra", None):
            raise ValueError(f"fit-check --family takes no config overrides (got {' '.join(args.extra)})")
        if bool(args.preset) == bool(args.hf_path):
            raise ValueError("fit-check --family: give one of --preset or --hf-path (the model to check)")
        if args.preset:
            if args.preset not in model.PRESETS:
                raise ValueError(f"unknown model preset {args.preset!r}; known: {', '.join(sorted(model.PRESETS))}")
            mcfg = model.ModelConfig.preset(args.preset)
        else:
            from prm_jax import hf

            mcfg = hf.load_config(args.hf_path)
        mcfg = mcfg.replace(dtype=args.dtype, scan_layers=True)
        shape = parse_mesh(args.mesh) if args.mesh else None
        hbm = tuple(float(x) for x in str(args.hbm_gb).split(","))
        result = fitcheck.score_fit_check(
            mcfg, args.family, batch_size=args.batch_size, seq_len=args.seq_len, mesh_shape=shape, hbm_gb=hbm
        )
        print(json.dumps(result) if args.json else fitcheck.format_score_result(result))
        return 0
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
    out = ["--devices", str(args.devices), "--hbm-gb", str(args.hbm_gb)]
    if args.config:
        out += ["--config", args.config]
    else:
        out += ["--family", args.family, "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
        out += ["--dtype", args.dtype] + (["--preset", args.preset] if args.preset else [])
        out += ["--hf-path", args.hf_path] if args.hf_path else []
    if args.mesh:
        out += ["--mesh", args.mesh]
    if args.json:
        out.append("--json")
    return out + list(getattr(args, "extra", []) or [])
