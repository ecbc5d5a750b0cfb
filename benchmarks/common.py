"""Shared pieces of the benchmarks: timing, FLOP counts, device ceilings, environment, JSON, tables and
the demo's problem draws.

Imports only numpy and the standard library at top level, so that the PyTorch peer (`peer_hf.py`)
can use it without importing JAX (JAX and torch must never share the GPU in one process).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the benchmarks run from a checkout

from prm_jax.flops import Shape, flops_per_token  # noqa: E402,F401  (the one FLOP count; imports no JAX)

VERSIONED = ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "triton", "numpy")


# --------------------------------------------------------------------------------------------
# Shapes and FLOPs
# --------------------------------------------------------------------------------------------
# Qwen2.5-0.5B (config.json of Qwen/Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads, 2 KV heads,
# intermediate 4864, vocab 151936, tied embeddings, q/k/v bias, rope theta 1e6).
QWEN25_05B = Shape(vocab=151936, d_model=896, layers=24, heads=14, kv_heads=2, head_dim=64, mlp=4864)
# The --tiny shape every script uses on the CPU.
TINY = Shape(vocab=512, d_model=64, layers=2, heads=4, kv_heads=2, head_dim=16, mlp=128)


def decode_bytes_floor(
    shape: Shape, batch: int, prompt: int, new: int, param_bytes: int = 2, cache_bytes: int = 2
) -> float:
    """Returns the fewest HBM bytes a whole sampled decode must read: weights + live KV per step.

    Each of the `new` decode steps reads every weight once (embedding table counted once when tied:
    the lm_head reads it; the input lookup reads only B rows) and the K and V of every position
    already in the cache (prompt + tokens so far). Prefill is not counted (it is compute-bound).
    """
    weights = (shape.non_embedding_params() + shape.vocab * shape.d_model) * param_bytes
    kv_per_pos = 2 * shape.layers * shape.kv_heads * shape.head_dim * cache_bytes * batch
    live = sum(prompt + t for t in range(new))  # positions attended at step t (new token's K/V written)
    return float(new * weights + kv_per_pos * live)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def time_steps(step: Callable[[], Any], sync: Callable[[Any], Any], warmup: int, iters: int, desc: str = "") -> dict:
    """Returns {median_s, min_s, max_s, times_s} of `iters` synced calls after `warmup` calls.

    `step()` launches one unit of work and returns something to wait on; `sync(x)` blocks until the
    device is done with it (jax.block_until_ready or torch.cuda.synchronize).
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        sync(step())
    times = []
    for _ in _progress(range(iters), desc):
        t0 = time.perf_counter()
        sync(step())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def _progress(it, desc):
    try:
        from tqdm import tqdm

        return tqdm(it, desc=desc or "timing", leave=False, file=sys.stderr, mininterval=2.0)
    except ImportError:  # the bar is a convenience; timing does not depend on it
        return it


# --------------------------------------------------------------------------------------------
# Ceilings (JAX); imported lazily so torch-only processes never load JAX
# --------------------------------------------------------------------------------------------
def jax_ceilings(tiny: bool = False, iters: int = 10) -> dict:
    """Returns the measured bf16 matmul rate (FLOP/s) and device copy bandwidth (bytes/s) under JAX.

    Matmul: 8192^3 bf16 (2*n^3 FLOPs) on random data, three input sets rotated. Copy: a 2 GiB bf16
    array negated (read once + written once, so 2x its bytes). --tiny uses n=256 and 4 MiB.
    """
    import jax
    import jax.numpy as jnp

    n = 256 if tiny else 8192
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    mats = [
        (jax.random.normal(keys[2 * i], (n, n), jnp.bfloat16), jax.random.normal(keys[2 * i + 1], (n, n), jnp.bfloat16))
        for i in range(3)
    ]
    mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.bfloat16))
    it = iter(range(10**9))
    t_mm = time_steps(lambda: mm(*mats[next(it) % 3]), jax.block_until_ready, 3, iters, "matmul")
    flops = 2.0 * n**3 / t_mm["median_s"]

    elems = (2 * 2**20) if tiny else (2**30)  # bf16: 4 MiB or 2 GiB
    xs = [jax.random.normal(keys[i], (elems,), jnp.bfloat16) for i in range(2)]
    neg = jax.jit(lambda x: -x)
    it2 = iter(range(10**9))
    t_cp = time_steps(lambda: neg(xs[next(it2) % 2]), jax.block_until_ready, 3, iters, "copy")
    bw = 2.0 * elems * 2 / t_cp["median_s"]
    del mats, xs
    return {
        "matmul_bf16_flops": flops,
        "matmul_n": n,
        "matmul_s": t_mm["median_s"],
        "copy_bytes_per_s": bw,
        "copy_bytes": 2 * elems * 2,
        "copy_s": t_cp["median_s"],
        "device": str(jax.devices()[0].device_kind),
    }


def jax_peak_bytes() -> int | None:
    """Returns the device allocator's peak bytes in use, or None where the backend keeps no stats."""
    import jax

    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


# --------------------------------------------------------------------------------------------
# Environment, JSON, tables
# --------------------------------------------------------------------------------------------
def env_info() -> dict:
    """Returns date, host, python and package versions, and the GPU name from nvidia-smi if any."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = _md.version(name)
        except _md.PackageNotFoundError:
            versions[name] = None
    gpu = None
    try:
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "gpu": gpu,
        "versions": versions,
    }


def out_dir() -> pathlib.Path:
    """Returns $OUT (the device tool's folder) or benchmarks/out, created."""
    path = pathlib.Path(os.environ.get("OUT") or (REPO / "benchmarks" / "out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(name: str, obj: Any, directory: pathlib.Path | None = None) -> pathlib.Path:
    """Returns the path of `name`.json written under `directory` (default out_dir())."""
    path = (directory or out_dir()) / f"{name}.json"
    path.write_text(json.dumps(obj, indent=1, default=str))
    return path


def read_json(name: str, directory: pathlib.Path | None = None) -> Any:
    """Returns the parsed `name`.json under `directory`, or None if the file is absent."""
    path = (directory or out_dir()) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(x: Any, digits: int = 3) -> str:
    """Returns a compact cell: floats to `digits` significant figures, None as '-'."""
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if abs(x) >= 1e3:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def table(rows: Sequence[dict], columns: Sequence[str], max_cell: int = 90) -> str:
    """Returns a markdown table of `rows` (dicts) restricted to `columns`, '-' for missing cells.

    Cells longer than `max_cell` (error messages) are cut with '...'; results.json keeps them whole.
    """
    cut = lambda t: t if len(t) <= max_cell else t[: max_cell - 3] + "..."
    cells = [[cut(fmt(r.get(c)).replace("\n", " ").replace("|", "/")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)


def run_worker(argv: list[str], timeout_s: float, env: dict | None = None, deadline: float | None = None) -> dict:
    """Returns the last JSON line a worker subprocess printed, or {'error': ...} on failure/timeout.

    `deadline` (time.time() seconds) caps the timeout so that a stage of several workers ends in
    time; a worker with under 15 s left is not started and the row says so.

    Each benchmark variant runs in its own process so that its peak memory is its own, a crash or
    OOM loses one row rather than the run, and JAX and torch never hold the GPU together.
    """
    if deadline is not None:
        timeout_s = min(timeout_s, deadline - time.time() - 2)
        if timeout_s < 15:
            return {"error": "skipped: the stage's time budget is spent"}
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable] + argv, capture_output=True, text=True, timeout=timeout_s, env=full_env, cwd=REPO
        )
    except subprocess.TimeoutExpired as e:
        # Workers print a cumulative RESULT line after each task: keep what finished in time.
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        result = _last_result(out) or {}
        result.update(
            error=f"timeout after {timeout_s:.0f}s (results before it are kept)",
            stderr_tail=err[-1500:],
            wall_s=time.perf_counter() - t0,
        )
        return result
    sys.stderr.write(proc.stderr[-4000:])
    result = _last_result(proc.stdout)
    if result is None:
        return {
            "error": f"exit code {proc.returncode}, no RESULT line",
            "stderr_tail": proc.stderr[-1500:],
            "wall_s": time.perf_counter() - t0,
        }
    result.setdefault("wall_s", time.perf_counter() - t0)
    return result


def launch(argv: list[str], timeout_s: float, deadline: float | None = None, in_process: bool = False) -> dict:
    """Returns a worker's RESULT: in a subprocess (run_worker), or with in_process=True by calling
    the script's `worker` / `main` in this process (tiny CPU runs and tests: one JAX and one torch
    import instead of one per worker; no timeout, no separate peak memory)."""
    if not in_process:
        return run_worker(argv, timeout_s, deadline=deadline)
    import contextlib
    import importlib
    import io

    module = importlib.import_module(pathlib.Path(argv[0]).stem)  # benchmarks/ is on sys.path
    is_worker = argv[1:2] == ["--worker"]
    entry, args = (module.worker, argv[2:]) if is_worker else (module.main, argv[1:])
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf):
            entry(args)
    except Exception as e:  # same contract as a failed subprocess: an error row, not a crash
        return {"error": f"{type(e).__name__}: {e}"[:2000], "wall_s": time.perf_counter() - t0}
    result = _last_result(buf.getvalue())
    if result is None:
        return {"error": "no RESULT line", "wall_s": time.perf_counter() - t0}
    result.setdefault("wall_s", time.perf_counter() - t0)
    return result


def _last_result(stdout: str) -> dict | None:
    """Returns the JSON of the last `RESULT ` line in a worker's stdout, or None."""
    result = None
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    return result


def emit(result: dict) -> None:
    """Prints the one machine-readable line a worker hands back to run_worker."""
    print("RESULT " + json.dumps(result, default=str), flush=True)


# --------------------------------------------------------------------------------------------
# The one results file (the device tool returns at most 8 files, so everything goes in one JSON)
# --------------------------------------------------------------------------------------------
RESULTS = "results"


def datasheet_peak(device_name: str | None) -> float | None:
    """Returns the datasheet dense-bf16 FLOP/s for a device name, or None when unknown (CPU): the
    table of `prm_jax.bench` (which imports no JAX). The issue's MFU figures use it; the measured
    matmul ceiling is reported beside it."""
    from prm_jax.bench import peak_flops

    return peak_flops(device_name) if device_name else None


def update_results(section: str, key: str, value: Any, directory: pathlib.Path | None = None) -> None:
    """Sets results[section][key] = value in results.json (stages run one after another)."""
    res = read_json(RESULTS, directory) or {}
    res.setdefault(section, {})[key] = value
    write_json(RESULTS, res, directory)


def peak_flops(results: dict, device_name: str | None) -> tuple[float | None, str]:
    """Returns (FLOP/s, source) for MFU: the datasheet peak, else the measured matmul ceiling."""
    ds = datasheet_peak(device_name)
    if ds:
        return ds, "datasheet"
    ceil = (results.get("ceilings") or {}).get("jax") or {}
    if ceil.get("matmul_bf16_flops"):
        return ceil["matmul_bf16_flops"], "measured"
    return None, "none"


def set_results(key: str, value: Any, directory: pathlib.Path | None = None) -> None:
    """Sets results[key] = value in results.json."""
    res = read_json(RESULTS, directory) or {}
    res[key] = value
    write_json(RESULTS, res, directory)


def stage_parser(doc: str):
    """Returns the argument parser shared by the sampler and scoring stages (their own flags added after)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--in-process", action="store_true", help="run the worker and the peer in this process (tiny CPU runs, tests)"
    )
    p.add_argument(
        "--budget", type=float, default=None, help="seconds for this whole stage: later workers get what is left"
    )
    return p


# --------------------------------------------------------------------------------------------
# The demo's problem draws
# --------------------------------------------------------------------------------------------
def eval_problems(c, score_on: str) -> list[str]:
    """Returns the problems a demo-run benchmark scores on: 'held-out' (the demo's own held-out draw,
    `c.search.problems` of them) or 'validation' (as many from a draw no demo stage uses, the held-out
    ones left out), so a setting can be chosen without looking at the held-out problems."""
    from prm_jax import demo  # noqa: PLC0415  (JAX; this module imports none at top level)

    problems = demo.held_out_problems(c)
    if score_on == "held-out":
        return problems
    if score_on != "validation":
        raise ValueError(f"score_on {score_on!r}: choose 'held-out' or 'validation'")
    held_out = set(problems)
    n = len(problems)
    return [q for q in demo._problems(c.task, c.seed + 4, 2 * n) if q not in held_out][:n]


def main(argv: Sequence[str] | None = None) -> int:
    """`env` records the environment; `ceilings [--tiny]` measures them; `skip NAME WHY` notes a stage."""
    import argparse

    p = argparse.ArgumentParser(description="benchmark bookkeeping for run_gpu.sh")
    p.add_argument("what", choices=("env", "ceilings", "skip"))
    p.add_argument("rest", nargs="*")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--budget", type=float, default=None, help="accepted for run_gpu.sh; unused")
    a = p.parse_args(argv)
    if a.what == "env":
        info = env_info()
        set_results("env", info)
        print(json.dumps(info, indent=1))
    elif a.what == "ceilings":
        try:
            c = jax_ceilings(tiny=a.tiny)
        except Exception as e:  # the benchmarks still run; MFU then uses the datasheet peak only
            c = {"error": f"{type(e).__name__}: {e}"[:2000]}
        update_results("ceilings", "jax", c)
        print(json.dumps(c, indent=1))
    else:
        if len(a.rest) != 2:
            p.error("skip needs NAME and WHY")
        res = read_json(RESULTS) or {}
        res.setdefault("skipped", {})[a.rest[0]] = a.rest[1]
        write_json(RESULTS, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
