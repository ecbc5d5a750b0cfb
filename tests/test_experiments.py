"""Smoke tests of experiments/*.py: every config loads, every documented command names a real variant,
and every tiny variant runs (2 steps of its own command) on this CPU."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from prm_jax import config as config_lib
from prm_jax import sweep

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"

# file -> its tiny variants. Every experiments/*.py must appear here (a new file without a tiny variant
# fails test_every_experiment_has_tiny_variants).
TINY = {
    "arith_prm.py": ["bce,tiny", "orm,tiny", "implicit_ce,tiny", "implicit_dpo,tiny", "pav,tiny", "sft,tiny"],
    "arith_policy_sft.py": ["tiny"],
    "arith_verifier.py": ["bce,tiny", "exact,tiny", "orm,tiny", "pav,tiny", "implicit_ce,tiny"],
    "prm800k_bce.py": ["tiny"],
    "math_shepherd_bce.py": ["tiny", "tiny_soft"],
    "implicit_prm.py": ["tiny_ce", "tiny_dpo"],
    "pav.py": ["tiny"],
    # stages run by `prm-jax sweep` (Python stages / flag-built commands): smoke-tested below
    "arith_mc_label.py": ["tiny"],
    "arith_search.py": ["tiny"],
    "processbench_eval.py": ["tiny"],
    "arith_demo.py": ["quick"],  # `prm-jax demo`: run by tests/test_demo.py
    "arith_rl.py": ["outcome,tiny"],  # `prm-jax rl`: run by tests/test_rl.py
}
# The real-scale variants and the mesh each names (asserted by the fit-check test).
REAL = {
    "prm800k_bce.py:v5p64": dict(data=2, fsdp=16, tensor=1),
    "prm800k_bce.py:h100x8": dict(data=1, fsdp=8, tensor=1),
    "math_shepherd_bce.py:soft": dict(data=1, fsdp=8, tensor=1),
    "math_shepherd_bce.py:hard": dict(data=1, fsdp=8, tensor=1),
    "implicit_prm.py:ce": dict(data=1, fsdp=8, tensor=1),
    "implicit_prm.py:dpo": dict(data=1, fsdp=8, tensor=1),
    "implicit_prm.py:ce,v5p64": dict(data=2, fsdp=16, tensor=1),
    "pav.py:h100x8": dict(data=1, fsdp=8, tensor=1),
    "pav.py:v5p64": dict(data=2, fsdp=16, tensor=1),
}
# The demo-stage files run in test_arith_stages_chain_tiny (each stage reading the previous one's output).
CHAIN = ("arith_policy_sft.py", "arith_mc_label.py", "arith_verifier.py", "arith_search.py")
TRAIN_SPECS = [
    f"{f}:{v}" for f, vs in TINY.items() for v in vs if f not in CHAIN and sweep.get_command(str(EXP / f)) == ["train"]
]
# arith_prm.py's tiny variants also train (and must lower their loss) in tests/test_train_objectives.py,
# so here they join the slow tier; every other file's tiny variant runs in CI.
TRAIN_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s.startswith("arith_prm.py") else s for s in TRAIN_SPECS]


def _files():
    return sorted(p.name for p in EXP.glob("*.py"))


def test_every_experiment_has_tiny_variants():
    assert set(_files()) == set(TINY), f"add the new file's tiny variants to TINY: {set(_files()) ^ set(TINY)}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_docstring_commands_name_real_variants(name):
    """Every `--config experiments/F.py:ARG` in a docstring loads (catches stale commands)."""
    module = sweep.load_module(str(EXP / name))
    doc = module.__doc__ or ""
    specs = re.findall(r"--config (experiments/\S+)", doc)
    assert specs, f"{name}: the docstring must carry the command that runs it"
    for spec in specs:
        path, _, arg = spec.partition(":")
        assert (ROOT / path).is_file(), spec
        cfg = sweep.load_module(str(ROOT / path)).get_config(arg or None)
        assert "objective" in cfg or "command" in cfg or hasattr(cfg, "stage"), spec


@pytest.mark.parametrize("name", sorted(set(TINY) - {"arith_prm.py"}))
def test_unknown_variant_is_a_clear_error(name):
    module = sweep.load_module(str(EXP / name))
    with pytest.raises(ValueError, match=name):
        module.get_config("no_such_variant")


@pytest.mark.parametrize("spec,mesh", sorted(REAL.items()))
def test_real_configs_name_their_mesh_and_paths(spec, mesh):
    cfg = config_lib.load_config(str(EXP / spec))
    assert dict(cfg.mesh.shape) == mesh
    assert cfg.model.preset in ("qwen2.5-math-7b", "llama-3.1-8b")
    assert cfg.init.hf_path and cfg.data.path  # settings, overridable with local or gs:// paths
    config_lib.apply_overrides(cfg, ["--config.init.hf_path=gs://b/ckpt", "--config.data.path=gs://b/d.jsonl"])
    assert cfg.init.hf_path == "gs://b/ckpt" and cfg.data.tokenizer == "gs://b/ckpt"


def test_prm800k_label_settings():
    cfg = config_lib.load_config(str(EXP / "prm800k_bce.py:v5p64"))
    assert (cfg.data.neutral, cfg.data.after_first_error, cfg.train.seq_len) == ("positive", "drop", 4096)
    assert cfg.model.preset == "qwen2.5-math-7b" and cfg.objective == "bce"


@pytest.mark.parametrize(
    "spec,key,values",
    [
        ("math_shepherd_bce.py:soft", "data.label_field", ["labels", "hard_labels"]),
        ("arith_verifier.py:bce,tiny", "data.label_field", ["labels", "hard_labels"]),
        ("implicit_prm.py:ce", "loss.beta", [0.01, 0.05, 0.2]),
    ],
)
def test_shipped_sweeps_apply_to_their_config(spec, key, values, tmp_path):
    runs = sweep.plan(str(EXP / spec), tmp_path)
    assert [r.point[key] for r in runs] == values
    for r in runs:  # every override is accepted by the config loader (no unknown keys)
        cfg = config_lib.load_config(str(EXP / spec))
        config_lib.apply_overrides(cfg, sweep.overrides(r.point))
        assert config_lib.get(cfg, key) == r.point[key]


@pytest.fixture(scope="module")
def one_device_mesh():
    import jax

    from prm_jax import sharding

    return sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])


@pytest.mark.parametrize("spec", TRAIN_PARAMS)
def test_tiny_training_variant_runs(spec, tmp_path, one_device_mesh):
    """Two steps of each tiny training variant (in-process `prm-jax train`; its own data, tokenizer,
    objective and model; eval and checkpoints off to keep compiles to one per variant)."""
    from prm_jax import loop

    cfg = config_lib.load_config(str(EXP / spec))
    config_lib.apply_overrides(
        cfg, ["--config.train.steps=2", "--config.train.eval_every=0", "--config.train.ckpt_every=-1"]
    )
    t0 = time.perf_counter()
    final = loop.run(cfg, str(tmp_path / "run"), mesh=one_device_mesh, progress=False)
    assert final["step"] == 2 and math.isfinite(final["loss"]), final
    m = sweep.final_metrics(tmp_path / "run")
    assert m["step"] == 2 and abs(m["loss"] - final["loss"]) < 1e-6
    print(f"{spec}: {time.perf_counter() - t0:.1f}s")


@pytest.mark.slow
def test_arith_stages_chain_tiny(tmp_path, one_device_mesh):
    """The demo's stages one by one from their tiny configs: policy SFT -> MC labels -> six verifiers
    -> search, each reading the previous stage's output (2 training steps each)."""
    import json

    from prm_jax import loop

    short = ["--config.train.steps=2", "--config.train.ckpt_every=2", "--config.train.eval_every=0"]
    runs = tmp_path / "arith"
    policy = runs / "policy"
    cfg = config_lib.apply_overrides(config_lib.load_config(str(EXP / "arith_policy_sft.py:tiny")), short)
    loop.run(cfg, str(policy), mesh=one_device_mesh, progress=False)

    stats = sweep.run_stage(
        str(EXP / "arith_mc_label.py:tiny"), str(runs / "mc"), [f"--config.policy_workdir={policy}"]
    )
    assert stats["mc_rollouts"] > 0 and (runs / "mc" / "labels" / "train.jsonl").is_file()

    for objective, name in (
        ("bce", "bce"),
        ("exact", "exact"),
        ("bce", "qpi"),
        ("orm", "orm"),
        ("pav", "pav"),
        ("implicit_ce", "implicit"),
    ):
        cfg = config_lib.load_config(str(EXP / f"arith_verifier.py:{objective},tiny"))
        over = short + [f"--config.init.workdir={policy}"]
        if objective == "implicit_ce":
            over.append(f"--config.init.ref_workdir={policy}")
        config_lib.apply_overrides(cfg, over)
        loop.run(cfg, str(runs / name), mesh=one_device_mesh, progress=False)

    out = sweep.run_stage(
        str(EXP / "arith_search.py:tiny"),
        str(tmp_path / "search"),
        [f"--config.runs={runs}", f"--config.labels={runs / 'mc' / 'labels'}"],
    )
    final = json.loads((tmp_path / "search" / "final.json").read_text())
    assert 0.0 <= final["acc@N/majority"] <= 1.0 and "acc@N/beam_pav" in final, final
    assert final["policy_accuracy"] == out["policy_accuracy"]


def _tiny_hf_checkpoint(path: Path) -> None:
    """Writes a random tiny model and a local character tokenizer as a HF folder (no hub)."""
    import string

    import jax
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from prm_jax import hf, model

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<eos>"] + sorted(set(string.printable)))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    ).save_pretrained(path)
    cfg = model.ModelConfig.preset("tiny", vocab_size=len(vocab), max_seq_len=1024)
    hf.save_checkpoint(str(path), cfg, model.init_params(cfg, jax.random.PRNGKey(0)))


def test_processbench_eval_tiny_through_sweep(tmp_path):
    """`prm-jax sweep --once` builds the `prm-jax evaluate processbench` flags from the config, runs it
    on a tiny random HF checkpoint and the 3-case fixture, and gathers its processbench.json."""
    import csv
    import subprocess
    import sys

    _tiny_hf_checkpoint(tmp_path / "ckpt")
    wd = tmp_path / "pb"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "prm_jax.cli",
            "sweep",
            "--once",
            "--config",
            str(EXP / "processbench_eval.py:tiny"),
            "--workdir",
            str(wd),
            f"--config.checkpoint={tmp_path / 'ckpt'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(open(wd / "sweep.csv")))
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert 0.0 <= float(rows[0]["results/average/f1"]) <= 1.0
    assert float(rows[0]["threshold"]) == 0.5 and (wd / "processbench.json").is_file()


# ---------------------------------------------------------------------------------------------------
# Fit check of the real-scale configs: the train step compiled ahead of time for the config's own mesh
# on simulated CPU devices (abstract inputs, nothing allocated), memory from XLA's memory analysis.
# Each compile is `prm-jax fit-check --json` in a subprocess (its own simulated device count).
# A full 28/32-layer compile is too slow for the suite on 2 cores, so the step is compiled at 2 and 4
# layers (layers under scan: per-device memory is affine in the layer count) and extrapolated to the
# real depth. CI checks prm800k_bce.py:h100x8; the slow tier (`make test-all`) checks every REAL
# config, each on its own device count (32 chips for v5p64).
HBM_GB = {"h100x8": 80.0, "v5p64": 95.0}


def fit_estimate(spec: str) -> dict:
    """Returns the per-device memory of `spec` at its real depth, extrapolated from 2 and 4 layers."""
    import json as _json
    import subprocess
    import sys

    cfg = config_lib.load_config(str(EXP / spec))
    devices = 1
    for v in dict(cfg.mesh.shape).values():
        devices *= int(v)
    from prm_jax import model

    real_layers = model.ModelConfig.preset(cfg.model.preset).n_layers
    points = []
    for layers in (2, 4):
        # `prm-jax fit-check` itself; an empty init.hf_path = the preset's shape (no checkpoint read);
        # cuDNN attention does not lower on CPU (XLA attention: same memory for the fit check).
        argv = [
            sys.executable,
            "-m",
            "prm_jax.cli",
            "fit-check",
            "--config",
            str(EXP / spec),
            "--devices",
            str(devices),
            "--json",
            f"--config.model.n_layers={layers}",
            "--config.init.hf_path=",
            "--config.model.attention_impl=xla",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        points.append(_json.loads(out.stdout.strip().splitlines()[-1]))
        assert points[-1]["devices"] == devices and points[-1]["mesh"] == {
            k: int(v) for k, v in dict(cfg.mesh.shape).items()
        }, points[-1]
    per_layer = (points[1]["total_bytes"] - points[0]["total_bytes"]) / 2
    total = points[0]["total_bytes"] + per_layer * (real_layers - 2)
    return {
        "spec": spec,
        "devices": devices,
        "layers": real_layers,
        "per_layer_gb": per_layer / 1e9,
        "gb_per_device": total / 1e9,
        "points": points,
    }


def _fit_specs():
    """Every REAL config; all but prm800k_bce.py:h100x8 (which CI runs) are in the slow tier."""
    return [s if s == "prm800k_bce.py:h100x8" else pytest.param(s, marks=pytest.mark.slow) for s in sorted(REAL)]


@pytest.mark.parametrize("spec", _fit_specs())
def test_real_config_fits_its_mesh(spec):
    est = fit_estimate(spec)
    hbm = HBM_GB["v5p64" if "v5p64" in spec else "h100x8"]
    print(
        f"fit-check {spec}: {est['gb_per_device']:.1f} GB/device of {hbm} on {est['devices']} devices "
        f"({est['per_layer_gb']:.2f} GB per layer)"
    )
    assert 0 < est["per_layer_gb"] and est["gb_per_device"] < hbm, est
