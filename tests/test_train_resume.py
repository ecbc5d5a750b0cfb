"""Preemption and failure: kill -9 and resume gives the uninterrupted losses; SIGTERM saves and exits 0;
a NaN loss stops with an error naming the step and keeps the last good checkpoint.

Each case trains the tiny synthetic config in its own process (tests/_train_worker.py, one CPU device).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_train_worker.py")
STEPS = 8


def _env(devices: int = 1) -> dict:
    env = dict(os.environ)
    # Cheaper XLA compiles: these tests compare runs compiled with the same flags.
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(workdir, **overrides):
    return subprocess.Popen(
        [sys.executable, WORKER, str(workdir), json.dumps(overrides)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _losses(workdir) -> dict:
    """Returns {step: loss} from metrics.jsonl, later rows (after a resume) winning."""
    out = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if "loss" in row:
                        out[row["step"]] = row["loss"]
    return out


def _ckpt_steps(workdir) -> list:
    d = os.path.join(workdir, "ckpt")
    return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


def _wait_for(pred, proc, timeout=240):
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ref")
    p = _start(wd, **{"train.steps": STEPS})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    losses = _losses(wd)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def test_killed_run_resumes_with_the_uninterrupted_losses(tmp_path, reference):
    p = _start(tmp_path, **{"train.steps": STEPS, "train.ckpt_every": 2, "worker.sleep": 0.4})
    _wait_for(lambda: 4 in _ckpt_steps(tmp_path) and max(_losses(tmp_path), default=0) >= 5, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    at_kill = max(_ckpt_steps(tmp_path))
    assert at_kill < STEPS
    p = _start(tmp_path, **{"train.steps": STEPS, "train.ckpt_every": 2})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    got = _losses(tmp_path)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert got[step] == pytest.approx(reference[step], abs=1e-6), (step, at_kill)
    assert _ckpt_steps(tmp_path)[-1] == STEPS


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path, reference):
    p = _start(tmp_path, **{"train.steps": STEPS, "train.ckpt_every": 1000, "worker.sleep": 0.4})
    _wait_for(lambda: max(_losses(tmp_path), default=0) >= 2, p)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    final = json.loads(out.split("FINAL ", 1)[1])
    assert final["preempted"] is True and final["step"] < STEPS
    assert _ckpt_steps(tmp_path) == [final["step"]]
    got = _losses(tmp_path)
    for step in got:
        assert got[step] == pytest.approx(reference[step], abs=1e-6)


def test_ckpt_every_zero_saves_the_last_step_and_minus_one_none(tmp_path, reference):
    """The default `train.ckpt_every=0` leaves the last step's checkpoint (a finished run can be
    evaluated and exported); a rerun finds it and trains nothing more; -1 keeps none."""
    p = _start(tmp_path / "zero", **{"train.steps": STEPS, "train.ckpt_every": 0})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert _ckpt_steps(tmp_path / "zero") == [STEPS]
    assert _losses(tmp_path / "zero") == reference  # saving changes no loss
    again = _start(tmp_path / "zero", **{"train.steps": STEPS, "train.ckpt_every": 0})
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert _ckpt_steps(tmp_path / "zero") == [STEPS] and _losses(tmp_path / "zero") == reference
    p = _start(tmp_path / "none", **{"train.steps": 2, "train.ckpt_every": -1})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert _ckpt_steps(tmp_path / "none") == []


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    p = _start(tmp_path, **{"train.steps": STEPS, "train.ckpt_every": 2, "worker.nan_step": 5})
    out, err = p.communicate(timeout=300)
    assert p.returncode != 0
    assert "NonFiniteLossError" in err and "at step 5" in err, err[-3000:]
    assert _ckpt_steps(tmp_path) == [2, 4]
    assert max(_losses(tmp_path)) == 4


def test_sigterm_while_reading_data_stops_within_seconds(tmp_path):
    """SIGTERM during data loading (a 600k-record file): before, only the step loop polled the flag."""
    big = tmp_path / "big.jsonl"
    line = json.dumps({"prompt": "a = 1. Find a.", "completions": ["a = 1"], "labels": [1]}) + "\n"
    big.write_text(line * 600_000)
    cmd = [
        sys.executable,
        "-m",
        "prm_jax.cli",
        "train",
        "--config",
        os.path.join(ROOT, "experiments", "arith_prm.py:bce,tiny"),
        "--workdir",
        str(tmp_path / "w"),
        "--config.data.source=stepwise_jsonl",
        f"--config.data.path={big}",
        "--config.data.tokenizer=char",
        "--no-progress",
    ]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait for the loader's "[data] reading" line (a fixed sleep lands elsewhere on a loaded machine)
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("[data] reading"):
            break
    assert p.poll() is None, "".join(lines)[-2000:]
    time.sleep(0.5)  # inside the 600k-record file
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert time.time() - t0 < 10, (time.time() - t0, err[-2000:])
    assert p.returncode == 0 and "SIGTERM outside a step" in err, err[-2000:]
    assert "[train] evaluation" not in err and "[data] after the first batch" not in err  # stopped while reading


@pytest.mark.slow
def test_fault_injection_script_resumes_match():
    """The random-kill script (3 kills here; 20 by default when run by hand)."""
    script = os.path.join(ROOT, "tests", "fault_injection.py")
    p = subprocess.run(
        [sys.executable, script, "--kills", "3", "--steps", "6", "--seed", "1"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads(p.stdout.split("SUMMARY ", 1)[1])
    assert summary["matched_uninterrupted_losses"] == 3


def test_resume_with_changed_data_says_what_changed_and_how_to_start_afresh(tmp_path):
    """A resume whose data file lost records is one line naming the saved and current record
    counts and the two ways on; no traceback."""
    data = tmp_path / "labels.jsonl"
    lines = open(os.path.join(ROOT, "experiments", "fixtures", "mc_labels_tiny.jsonl")).read().splitlines(True)
    data.write_text("".join(lines))
    wd = tmp_path / "run"

    def train(steps):
        argv = [
            "train",
            "--config",
            "experiments/math_shepherd_bce.py:tiny_soft",
            "--workdir",
            str(wd),
            "--no-progress",
        ]
        argv += [f"--config.data.path={data}", f"--config.train.steps={steps}"]
        return subprocess.run(
            [sys.executable, "-m", "prm_jax.cli", *argv], cwd=ROOT, env=_env(), capture_output=True, text=True
        )

    p = train(2)
    assert p.returncode == 0, p.stderr[-3000:]
    data.write_text("".join(lines[:8]))
    p = train(4)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and err[-1].startswith("error: cannot resume"), p.stderr[-3000:]
    import re

    m = re.search(r"training records: saved (\d+), now (\d+)\)", err[-1])
    assert m and int(m.group(1)) > int(m.group(2)) > 0 and "new --workdir" in err[-1], err[-1]
    assert "Traceback" not in p.stderr
