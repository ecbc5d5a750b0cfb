"""The fit check compiles a tiny sharded step with abstract inputs; memory agrees with a hand count."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prm_jax import fitcheck
from prm_jax.commands.fitcheck import parse_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_abstract_batch_keys_and_shapes():
    b = fitcheck.abstract_batch("implicit_dpo", 4, 32, 6)
    assert b["tokens"].shape == (4, 32) and b["rejected_tokens"].shape == (4, 32)
    assert b["step_pos"].shape == (4, 6) and b["rejected_step_ids"].dtype == np.int32
    assert fitcheck.abstract_batch("pav", 2, 8, 3)["v0"].shape == (2,)


def test_parse_mesh():
    assert parse_mesh("data=2,fsdp=-1") == {"data": 2, "fsdp": -1}
    with pytest.raises(ValueError, match="axis=size"):
        parse_mesh("data")


def test_fit_check_cli_on_eight_simulated_devices():
    env = dict(os.environ)
    env.pop("PRM_JAX_FITCHECK_CHILD", None)
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        "-m",
        "prm_jax.cli",
        "fit-check",
        "--config",
        "experiments/arith_prm.py:bce,tiny",
        "--devices",
        "8",
        "--mesh",
        "data=1,fsdp=8,tensor=1",
        "--json",
        "--hbm-gb",
        "0.001,16",
        "--config.train.batch_size=8",
        "--config.train.seq_len=64",
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["devices"] == 8 and r["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    # Arguments hold this device's slice of params + Adam mu, nu (3 copies, fp32) plus the batch:
    # with FSDP over 8, at least 3 * 4 bytes * params / 8 (small tensors replicate, so a bit more).
    floor = 3 * 4 * r["params"] / 8
    assert floor <= r["argument_bytes"] <= 3 * 4 * r["params"] + 1e6
    # The donated state aliases the outputs.
    assert r["alias_bytes"] > 0.9 * floor
    assert r["flops_per_device"] > 0 and r["temp_bytes"] > 0
    assert r["fits"] == {"0.001GB": False, "16GB": True}


def test_score_fit_check_knows_the_families():
    """Scoring fit-check per PRM family: sharding the weights shrinks each device's arguments, an
    implicit PRM holds two models, and bfloat16 weights are half of float32's."""
    from prm_jax import fitcheck, heads, model

    cfg = model.ModelConfig.preset("small", dtype="float32")
    run = lambda fam, shape, c=cfg: fitcheck.score_fit_check(c, fam, batch_size=8, seq_len=64, mesh_shape=shape)  # noqa: E731
    got = {fam: run(fam, {"data": 1, "fsdp": 8, "tensor": 1}) for fam in heads.FAMILIES}
    one = run("math_shepherd", {"data": 8, "fsdp": 1, "tensor": 1})
    params_bytes = model.num_params(cfg.replace(score_head=False)) * 4
    assert one["argument_bytes"] >= params_bytes  # unsharded: every device holds every weight
    assert got["math_shepherd"]["argument_bytes"] < one["argument_bytes"] / 4
    assert got["implicit"]["argument_bytes"] > 1.8 * got["math_shepherd"]["argument_bytes"]
    bf16 = run("math_shepherd", {"data": 8, "fsdp": 1, "tensor": 1}, cfg.replace(dtype="bfloat16"))
    assert abs(bf16["argument_bytes"] / one["argument_bytes"] - 0.5) < 0.05
    assert all(r["fits"]["80GB"] and r["total_bytes"] > 0 for r in got.values())
    text = fitcheck.format_score_result(got["qwen_prm"])
    assert "scoring with qwen_prm" in text and "fits" in text
    with pytest.raises(ValueError, match="unknown PRM family"):
        run("nonsense", None)


def test_fit_check_cli_with_a_family():
    env = dict(os.environ)
    env.pop("PRM_JAX_FITCHECK_CHILD", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "prm_jax.cli", "fit-check", "--family", "qwen_prm", "--preset", "small"]
    cmd += ["--seq-len", "64", "--devices", "8", "--mesh", "data=1,fsdp=8,tensor=1", "--json", "--hbm-gb", "0.0001,16"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["family"] == "qwen_prm" and r["devices"] == 8 and r["dtype"] == "bfloat16"
    assert r["fits"] == {"0.0001GB": False, "16GB": True}
    bad = subprocess.run(
        cmd[:7] + ["nope", "--devices", "8"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "unknown model preset 'nope'" in bad.stderr


def test_fit_check_of_a_cudnn_config_on_the_cpu_uses_xla_and_says_so():
    """A GPU config (cuDNN attention) is checked on the CPU with XLA attention, noted as an upper
    bound, instead of failing with 'cuDNN is not detected'."""
    from prm_jax import config as cfg_lib

    c = cfg_lib.load_config("experiments/arith_prm.py:bce,tiny")
    c.model.attention_impl = "cudnn"
    c.train.update(batch_size=8, seq_len=64)
    r = fitcheck.fit_check(c, hbm_gb=(16.0,), vocab_size=84)  # the char tokenizer's
    assert "cuDNN cannot compile on the CPU" in r["note"] and r["fits"] == {"16GB": True}
    assert "note: attention checked as XLA" in fitcheck.format_result(r)
    assert c.model.attention_impl == "cudnn"  # the caller's config is not changed
