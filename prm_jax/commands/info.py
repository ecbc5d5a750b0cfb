"""`prm-jax info [--bench]`: versions of the stack, devices and backend (and a 30-second benchmark of the
three hot paths on this device: `prm_jax.bench`)."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform

PACKAGES = (
    "prm-jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "transformers",
    "safetensors",
    "tensorflow-datasets",
    "grain",
    "ml-collections",
    "numpy",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument(
        "--bench",
        action="store_true",
        help="also time the PRM train step, the sampler and verifier scoring on this device (about 30 s)",
    )
    parser.add_argument("--bench-seconds", type=float, default=30.0, help="timing budget of --bench, compiles aside")


def collect() -> dict:
    """Returns versions, backend and device list as a JSON-able dict."""
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "versions": versions,
        "backend": jax.default_backend(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": [str(d) for d in jax.local_devices()],
        "device_count": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.bench:
        from prm_jax import bench

        info["bench"] = bench.run(args.bench_seconds, progress=not args.json)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"prm-jax {info['versions']['prm-jax']}  python {info['python']}")
    for k, v in info["versions"].items():
        print(f"  {k:22s} {v or 'not installed'}")
    print(
        f"backend {info['backend']}  devices {info['device_count']} ({info['device_kind']})"
        f"  process {info['process_index']}/{info['process_count']}"
    )
    if args.bench:
        print(bench.table(info["bench"]))
    return 0
