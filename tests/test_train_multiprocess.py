"""Two local processes under jax.distributed (2 CPU devices each) give the losses of one process with 4."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.test_train_resume import ROOT, WORKER, _losses

STEPS = 4


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    overrides = json.dumps({"train.steps": STEPS, "mesh.shape": {"data": 2, "fsdp": 2, "tensor": 1}})
    one = subprocess.Popen(
        [sys.executable, WORKER, str(tmp_path / "one"), overrides],
        env=_env(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(tmp_path / "two"), overrides, str(i), "2", str(port)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in [one] + procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
    ref, got = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(ref) == list(range(1, STEPS + 1)) and sorted(got) == sorted(ref)
    for step in ref:
        assert got[step] == pytest.approx(ref[step], abs=1e-5), step
