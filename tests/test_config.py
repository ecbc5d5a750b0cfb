"""The config system: one base config holds every key the library reads, experiment files start from it,
configs are locked, a typo names the nearest key, and the demo is a config like any other."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import ml_collections
import pytest

from prm_jax import config as config_lib
from prm_jax.configs import base, demo

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
# Every variant of every experiment file (a new variant must be added here to be checked).
VARIANTS = {
    "arith_prm.py": [
        f"{o},{s}"
        for o in ("bce", "orm", "implicit_ce", "implicit_dpo", "pav", "sft")
        for s in ("tiny", "small", "qwen7b", "llama8b")
    ],
    "arith_policy_sft.py": ["tiny", "demo"],
    "arith_verifier.py": [f"{o},{s}" for o in ("bce", "orm", "pav", "implicit_ce") for s in ("tiny", "demo")],
    "prm800k_bce.py": ["v5p64", "h100x8", "tiny"],
    "math_shepherd_bce.py": ["hard", "soft", "tiny", "tiny_soft"],
    "implicit_prm.py": ["ce", "dpo", "tiny_ce", "tiny_dpo", "ce,v5p64", "dpo,v5p64"],
    "pav.py": ["h100x8", "v5p64", "tiny"],
    "arith_mc_label.py": ["demo", "prover_temp", "tiny"],
    "arith_search.py": ["demo", "pav_alpha", "agg", "tiny"],
    "processbench_eval.py": ["prm", "prm_pick", "tiny"],
    "arith_demo.py": ["full", "quick"],
    "arith_rl.py": [
        f"{src},{size}" for src in ("outcome", "prm_sum", "prm_min", "pav", "prime") for size in ("demo", "tiny")
    ],
}
SPECS = [f"{f}:{v}" for f, vs in VARIANTS.items() for v in vs]


def _keys(node, prefix=""):
    """Returns the dotted keys of a ConfigDict, sections included."""
    out = set()
    for k in node.keys():
        out.add(prefix + k)
        if isinstance(node[k], ml_collections.ConfigDict):
            out |= _keys(node[k], f"{prefix}{k}.")
    return out


def _training_configs(cfg):
    """Returns the training configs in a loaded config: itself, or a demo config's policy and verifiers."""
    if "stage" not in cfg:
        return {"": cfg}
    out = {}
    if "policy" in cfg:
        out["policy"] = cfg.policy
    if "verifiers" in cfg and "objective" in cfg.verifiers[next(iter(cfg.verifiers))]:
        out.update({f"verifiers.{k}": cfg.verifiers[k] for k in cfg.verifiers})
    for k in ("train", "prime"):  # an RL stage's policy-gradient step and online implicit PRM
        if k in cfg and "objective" in cfg[k]:
            out[k] = cfg[k]
    return out


def test_every_experiment_file_is_listed():
    assert {p.name for p in EXP.glob("*.py")} == set(VARIANTS)


@pytest.mark.parametrize("spec", SPECS)
def test_every_variant_loads_locked_with_exactly_the_base_keys(spec):
    cfg = config_lib.load_config(str(EXP / spec))
    assert cfg.is_locked
    with pytest.raises(AttributeError):
        cfg.no_such_key = 1  # locked: a new key cannot be added
    want = _keys(base.get_config())
    for where, c in _training_configs(cfg).items():
        got = _keys(c)
        assert got == want, (where, sorted(got ^ want))


def _library_reads():
    """Returns {dotted key: [file:line]} of every `config.a.b` chain the library reads, with the
    section readers' own names (`data_cfg.x` is `data.x`, ...)."""
    roots = {"config": "", "data_cfg": "data.", "loss_cfg": "loss.", "optim_cfg": "optim.", "train_cfg": "train."}
    reads = {}
    for path in (ROOT / "prm_jax").rglob("*.py"):
        if path.parent.name == "configs" or path.name == "demo.py":
            continue  # the configs themselves, and the demo (its own config; checked by its own test)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            chain, x = [], node
            while isinstance(x, ast.Attribute):
                chain.append(x.attr)
                x = x.value
            if isinstance(x, ast.Name) and x.id in roots:
                key = roots[x.id] + ".".join(reversed(chain))
                reads.setdefault(key, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return reads


METHODS = set(dir(ml_collections.ConfigDict)) | {"is_locked"}


def _resolve(key, cfg):
    """Returns the prefix of `key` that names config entries (the rest are methods of a value), or
    raises KeyError for a name that is neither a key nor a method."""
    node, used = cfg, []
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict):
            break  # a method or attribute of a value (str.split, ...)
        if part in node:
            used.append(part)
            node = node[part]
        elif part in METHODS:
            break
        else:
            raise KeyError(key)
    return ".".join(used)


def test_every_key_the_library_reads_is_in_the_base_config_and_every_key_is_read():
    from prm_jax import model
    from prm_jax.data import arith

    cfg = base.get_config()
    reads = _library_reads()
    assert len(reads) > 40, "the scan found too few reads to be meaningful"
    unknown = {}
    for key, where in reads.items():
        try:
            _resolve(key, cfg)
        except KeyError:
            unknown[key] = where
    assert not unknown, f"the library reads keys the base config lacks: {unknown}"
    read = {_resolve(k, cfg) for k in reads}
    read = {k for full in read for k in (".".join(full.split(".")[: i + 1]) for i in range(len(full.split("."))))}
    # model keys other than preset / hf_path / vocab_size are ModelConfig fields (train.model_config
    # passes every non-None one); data.arith keys are ArithConfig fields (ArithConfig.from_dict).
    fields = {f.name for f in dataclasses.fields(model.ModelConfig)}
    assert set(cfg.model.keys()) - {"preset", "hf_path"} == fields
    assert set(cfg.data.arith.keys()) == {f.name for f in dataclasses.fields(arith.ArithConfig)}
    consumed_whole = {"model", "data.arith", "mesh.shape"}
    never = [
        k for k in _keys(cfg) if k not in read and not any(k == c or k.startswith(c + ".") for c in consumed_whole)
    ]
    assert not never, f"base config keys nothing reads: {never}"
    assert {"model", "data.arith", "mesh.shape"} <= read


def test_the_scan_catches_a_planted_unknown_read(tmp_path):
    with pytest.raises(KeyError):
        _resolve("optim.lrr", base.get_config())
    assert _resolve("data.marker.split", base.get_config()) == "data.marker"
    assert _resolve("train.keys", base.get_config()) == "train"


def test_complete_fills_a_partial_config_and_refuses_unknown_keys():
    c = config_lib.complete({"objective": "orm", "train": {"steps": 3}, "data": {"arith": {"max_steps": 2}}})
    assert c.is_locked and c.train.steps == 3 and c.train.batch_size == base.get_config().train.batch_size
    assert c.data.arith.max_steps == 2 and c.data.arith.min_steps == base.get_config().data.arith.min_steps
    with pytest.raises(config_lib.UnknownKeyError, match=r"config.optim.lrr is not an optim setting \(did you mean"):
        config_lib.complete({"optim": {"lrr": 1.0}})
    with pytest.raises(KeyError, match="config.data.arith.max_stepz is not a data.arith setting"):
        config_lib.complete_section("data", {"arith": {"max_stepz": 2}})


def test_overrides_are_checked_against_every_section():
    c = config_lib.load_config(str(EXP / "arith_prm.py:bce,tiny"))
    config_lib.apply_overrides(c, ["--config.mesh.shape.fsdp=2", "--config.data.arith.max_steps=2"])
    assert c.mesh.shape.fsdp == 2 and c.data.arith.max_steps == 2
    for bad, near in (
        ("--config.model.d_modle=8", "--config.model.d_model"),
        ("--config.trian.steps=1", "--config.train"),
        ("--config.mesh.shape.fdsp=2", "--config.mesh.shape.fsdp"),
    ):
        with pytest.raises(config_lib.UnknownKeyError, match=f"did you mean {near}"):
            config_lib.apply_overrides(c, [bad])
    with pytest.raises(config_lib.UnknownKeyError, match="is a value, not a section"):
        config_lib.apply_overrides(c, ["--config.train.steps.x=1"])


def test_cli_reports_a_config_typo_in_one_line(capsys):
    from prm_jax import cli

    assert cli.main(["demo", "--config", "quick", "--config.search.nn=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: override '--config.search.nn=3'") and "did you mean --config.search.n" in err


def test_demo_config_is_one_description_of_the_run():
    c = demo.get_config("full")
    c.lock()
    config_lib.apply_overrides(c, ["--config.seed=3"])
    # the seed moves every training run of the demo
    assert c.policy.train.seed == 3 and all(c.verifiers[k].train.seed == 3 for k in c.verifiers)
    assert c.verifier_base.train.seed == 6  # fresh records: seed + 3
    assert set(c.verifiers) == set(demo.VERIFIERS)
    assert c.verifiers.qpi.data.label_field == "labels" and c.verifiers.bce.data.label_field == "hard_labels"
    assert c.verifiers.implicit.objective == "implicit_ce" and c.verifiers.implicit.loss.beta == 0.5
    assert c.verifiers.implicit.optim.lr == 5e-4  # chosen on validation problems (configs/demo.py)
    assert c.verifiers.exact.optim.lr == 5e-2 and c.verifiers.bce.optim.lr == 3e-3
    # the policy learns the task it is labelled and evaluated on: values written beside their names
    assert c.task.named_values and c.policy.data.arith.named_values
    assert {k: c.policy.data.arith[k] for k in c.task} == {**c.task.to_dict(), "corrupt_prob": 0.1}
    q = demo.get_config("quick")
    assert q.search.n < c.search.n and q.policy.train.steps < c.policy.train.steps
    with pytest.raises(ValueError, match="unknown variant"):
        demo.get_config("huge")


def test_the_packaged_demo_config_is_what_experiments_documents():
    assert config_lib.to_dict(config_lib.load_config(str(EXP / "arith_demo.py:quick"))) == config_lib.to_dict(
        demo.get_config("quick")
    )


def test_cli_version_and_top_level_help(capsys):
    import prm_jax
    from prm_jax import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"prm-jax {prm_jax.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "process reward models (PRMs) in JAX" in out and all(name in out for name in cli.COMMANDS)
