"""The installed package (a wheel, not the checkout) carries what `prm-jax demo` needs: its config
ships as `prm_jax/configs/`, and nothing under experiments/ or tests/ is required."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_wheel_runs_the_demo_config_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = wheels.glob("prm_jax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"prm_jax/configs/base.py", "prm_jax/configs/demo.py", "prm_jax/demo.py"} <= set(names)
    assert not [n for n in names if n.startswith(("experiments/", "tests/"))]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import prm_jax, sys; assert prm_jax.__file__.startswith(sys.argv[1]), prm_jax.__file__; "
        "from prm_jax import demo; c = demo.default_config('quick'); print(c.search.n, c.policy.objective)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(site)], cwd=empty, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and r.stdout.split() == ["4", "sft"], r.stdout + r.stderr[-2000:]
    # The CLI reads the packaged config and checks overrides against it (a typo: one line, exit 2).
    r = subprocess.run(
        [sys.executable, "-m", "prm_jax.cli", "demo", "--config", "quick", "--config.policy.train.stpes=1"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "did you mean --config.policy.train.steps" in r.stderr, r.stderr[-2000:]
