"""`prm-jax info --bench` (prm_jax.bench): the three timings run on this CPU and print one table."""

import json

from prm_jax import bench


def test_peak_flops_matches_device_kinds():
    assert bench.peak_flops("NVIDIA H200") == 989.4e12 and bench.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench.peak_flops("TPU v5p") == 459e12 and bench.peak_flops("cpu") is None


def test_info_bench_times_the_three_paths_without_the_data_stack():
    """`prm-jax info --bench` in a process where tfds and grain cannot import (as on the accelerator
    images; ml_collections is needed, through the config's completion, and run_gpu.sh carries it)."""
    import subprocess
    import sys

    code = (
        "import sys; [sys.modules.__setitem__(m, None) for m in ('tensorflow_datasets', 'grain')]; "
        "from prm_jax import cli; sys.exit(cli.main(['info', '--bench', '--bench-seconds', '1', '--json']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])["bench"]
    assert res["platform"] == "cpu" and res["preset"] == "tiny"
    assert [r["bench"] for r in res["rows"]] == ["train", "sampler", "scoring"]
    for r in res["rows"]:
        assert r["tokens_per_s"] > 0 and r["ms"] > 0
    # tokens/s is the batch's tokens over the median call: the two figures agree
    b, s = bench.shapes("cpu")["train"]
    assert abs(res["rows"][0]["tokens_per_s"] * res["rows"][0]["ms"] / 1e3 - b * s) < 1e-6 * b * s
    assert res["rows"][0]["mfu"] is None  # no datasheet peak for a CPU
    text = bench.table(res)
    assert "PRM train step" in text and "sampler" in text and "verifier scoring" in text
