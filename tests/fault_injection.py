"""Random kills against a tiny training run: how many resumes reproduce the uninterrupted losses.

    python tests/fault_injection.py --kills 20 [--steps 12] [--seed 0] [--sigterm-share 0.25]

One uninterrupted reference run (a checkpoint every step) gives the losses. Then each trial starts
the same run in a fresh folder, kills it (kill -9, or SIGTERM for a share of the trials) at a random
moment of its expected lifetime (start-up, data, compile, steps and saves alike), restarts it until
it finishes, and compares every step's loss with the reference (bit-equal: the same floats written).
It also checks that no half-written `*.orbax-checkpoint-tmp*` folder is left and that every
checkpoint restores. Prints one JSON line per trial and a summary; exits 1 when a trial mismatches.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_train_worker.py")


def _env() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0 "
        "--xla_llvm_disable_expensive_passes=true"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(workdir: str, steps: int, step_sleep: float = 0.0) -> subprocess.Popen:
    # step_sleep (a slow loader: the math is unchanged) stretches the step phase, so that random
    # kills land in steps, loading and saves as well as in start-up and compiling
    over = {"train.steps": steps, "train.ckpt_every": 1, "train.keep_ckpts": 2, "worker.sleep": step_sleep}
    return subprocess.Popen(
        [sys.executable, WORKER, workdir, json.dumps(over)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def losses(workdir: str) -> dict:
    """Returns {step: loss} of metrics.jsonl (a resumed run truncates the rows it replays)."""
    out = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                row = json.loads(line)
                if "loss" in row:
                    out[row["step"]] = row["loss"]
    return out


def _finish(workdir: str, steps: int, timeout: float, step_sleep: float = 0.0) -> tuple[int, str]:
    p = _start(workdir, steps, step_sleep)
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def trial(
    workdir: str, steps: int, kill_at: float, sig: int, reference: dict, timeout: float, step_sleep: float
) -> dict:
    """Returns one trial's record: when and how it was killed, the restarts, and whether it matched."""
    p = _start(workdir, steps, step_sleep)
    time.sleep(kill_at)
    alive = p.poll() is None
    if alive:
        p.send_signal(sig)
    try:
        p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"kill_at_s": kill_at, "error": "did not stop within 60 s of the signal"}
    done_before = max(losses(workdir), default=0)
    rc, err = _finish(workdir, steps, timeout)  # the restart runs at full speed
    got = losses(workdir)
    left = (
        [x for x in os.listdir(os.path.join(workdir, "ckpt")) if "tmp" in x]
        if os.path.isdir(os.path.join(workdir, "ckpt"))
        else []
    )
    match = rc == 0 and sorted(got) == list(range(1, steps + 1)) and all(got[s] == reference[s] for s in got)
    return {
        "kill_at_s": round(kill_at, 2),
        "signal": signal.Signals(sig).name,
        "killed_alive": alive,
        "steps_logged_before_restart": done_before,
        "restart_rc": rc,
        "matched": bool(match),
        "tmp_left": left,
        **({} if rc == 0 else {"stderr": err[-800:]}),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigterm-share", type=float, default=0.25, help="share of trials killed by SIGTERM")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for one restarted run")
    ap.add_argument("--step-sleep", type=float, default=0.5, help="seconds slept after each step (see _start)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    base = tempfile.mkdtemp(prefix="prm_fault_")
    try:
        ref_dir = os.path.join(base, "reference")
        t0 = time.perf_counter()
        rc, err = _finish(ref_dir, args.steps, args.timeout, args.step_sleep)
        life = time.perf_counter() - t0
        if rc != 0:
            print(err[-3000:], file=sys.stderr)
            return 2
        reference = losses(ref_dir)
        print(json.dumps({"reference_steps": len(reference), "reference_wall_s": round(life, 1)}), flush=True)
        results = []
        for i in range(args.kills):
            sig = signal.SIGTERM if rng.random() < args.sigterm_share else signal.SIGKILL
            r = trial(
                os.path.join(base, f"t{i}"),
                args.steps,
                rng.uniform(0.2, life),
                sig,
                reference,
                args.timeout,
                args.step_sleep,
            )
            results.append(r)
            print(json.dumps({"trial": i, **r}), flush=True)
        matched = sum(bool(r.get("matched")) for r in results)
        summary = {
            "kills": args.kills,
            "matched_uninterrupted_losses": matched,
            "killed_while_running": sum(bool(r.get("killed_alive")) for r in results),
            "tmp_folders_left": sum(len(r.get("tmp_left", [])) for r in results),
        }
        print("SUMMARY " + json.dumps(summary), flush=True)
        return 0 if matched == args.kills and not summary["tmp_folders_left"] else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
