"""Faults and bad input lose nothing: no non-finite checkpoint, corrupt checkpoints survived, a loader
that cannot fill a batch says so, skipped records counted, targets required, config keys checked,
bad files and bad HF checkpoints named. (Kills and SIGTERM in subprocesses: test_train_resume.py,
and the random-kill script tests/fault_injection.py.)"""

import json
import logging
import os

import jax
import numpy as np
import pytest

from prm_jax import loop, sharding
from prm_jax.checkpoint import Checkpointer, CorruptCheckpointError
from prm_jax.data import readers
from prm_jax.data.records import DataError
from tests._train_worker import synthetic_iterator_factory, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh({"data": 1}, jax.devices()[:1])


def _run(workdir, mesh, **train):
    cfg = tiny_config("bce", **train)
    return loop.run(cfg, str(workdir), make_iterator=synthetic_iterator_factory, progress=False, mesh=mesh)


def _restored(workdir, mesh, step=None, config=None, set_aside=False):
    from prm_jax import train

    s = train.setup(config or tiny_config("bce"), mesh=mesh)
    ck = Checkpointer(str(workdir), async_save=False)
    try:
        return ck.restore(s.abstract_state, step, set_aside=set_aside)
    finally:
        ck.close()


def _steps(workdir):
    d = os.path.join(workdir, "ckpt")
    return sorted(int(x) for x in os.listdir(d) if x.isdigit())


def test_a_huge_lr_never_checkpoints_a_non_finite_state(tmp_path, mesh):
    """lr 1e6 with a checkpoint every step: the loss stays finite for a while after the weights blew
    up; before, ckpt/N held NaN weights. Now the step whose state is not finite is never saved."""
    with pytest.raises(loop.NonFiniteLossError, match=r"at step (\d+).*nothing of this step is saved") as e:
        loop.run(_huge_lr(), str(tmp_path), make_iterator=synthetic_iterator_factory, progress=False, mesh=mesh)
    bad = int(str(e.value).split("at step ")[1].split(" ")[0])
    steps = _steps(tmp_path)
    assert steps and max(steps) == bad - 1, (steps, bad)
    assert f"step {bad - 1}, is kept" in str(e.value)
    state, _, _ = _restored(tmp_path, mesh, config=_huge_lr())  # validated: finite, fingerprint equal
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state.params))


def _huge_lr():
    cfg = tiny_config("bce", steps=40, ckpt_every=1)
    cfg.optim.lr = 1e6
    cfg.optim.clip = 0.0
    return cfg


def test_corrupt_newest_checkpoints_fall_back_to_the_newest_valid(tmp_path, mesh, caplog):
    _run(tmp_path, mesh, steps=4, ckpt_every=1, keep_ckpts=10)
    ref, _, _ = _restored(tmp_path, mesh, step=1)
    ck_dir = tmp_path / "ckpt"
    # step 4: a truncated array file; step 3: flipped bytes (Orbax reads them without complaint)
    arrays = sorted(
        (p for p in (ck_dir / "4" / "state").rglob("*") if p.is_file() and p.stat().st_size > 4096),
        key=lambda p: -p.stat().st_size,
    )
    arrays[0].write_bytes(arrays[0].read_bytes()[: arrays[0].stat().st_size // 2])
    target = sorted(
        (p for p in (ck_dir / "3" / "state").rglob("*") if p.is_file() and p.stat().st_size > 8192),
        key=lambda p: -p.stat().st_size,
    )[0]
    data = bytearray(target.read_bytes())
    for i in range(len(data) // 2, min(len(data), len(data) // 2 + 4096)):
        data[i] ^= 0x01  # the lowest bit: the values stay finite
    target.write_bytes(bytes(data))
    # step 2: a truncated _METADATA
    meta = next((ck_dir / "2").rglob("_METADATA"))
    meta.write_text(meta.read_text()[:20])
    # a half-written save of a killed run
    (ck_dir / "5.orbax-checkpoint-tmp-123").mkdir()
    with caplog.at_level(logging.WARNING):
        state, data_state, _ = _restored(tmp_path, mesh, set_aside=True)
    assert int(state.step) == 1 and data_state == {"index": 1}
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(ref.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    warned = " ".join(r.getMessage() for r in caplog.records)
    for step in (4, 3, 2):
        assert f"{ck_dir}/{step} is unusable" in warned and f"{ck_dir}/{step} to " in warned, warned
    assert sorted(os.listdir(tmp_path / "ckpt_corrupt")) == ["2", "3", "4"]
    assert not any("tmp" in x for x in os.listdir(ck_dir))
    # a run resumes from it and trains on to the end
    final = _run(tmp_path, mesh, steps=4, ckpt_every=1, keep_ckpts=10)
    assert final["step"] == 4 and _steps(tmp_path)[-1] == 4
    # nothing valid left: one clear error
    for d in ck_dir.iterdir():
        if d.name.isdigit():
            m = next(d.rglob("_METADATA"))
            m.write_text("{")
    with pytest.raises(CorruptCheckpointError, match="no valid checkpoint under"):
        _restored(tmp_path, mesh)


def test_a_state_that_differs_from_its_save_time_fingerprint_is_rejected(tmp_path, mesh, caplog):
    """Finite but wrong values (what a flip in uncompressed data gives) are caught by the fingerprint."""
    _run(tmp_path, mesh, steps=2, ckpt_every=1, keep_ckpts=5)
    check = (
        next((tmp_path / "ckpt" / "2" / "check").rglob("*.json"))
        if list((tmp_path / "ckpt" / "2" / "check").rglob("*.json"))
        else tmp_path / "ckpt" / "2" / "check" / "metadata"
    )
    saved = json.loads(check.read_text())
    saved["bit_sums"][3] = (saved["bit_sums"][3] + 1) % 2**32
    check.write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING):
        state, _, _ = _restored(tmp_path, mesh)
    assert int(state.step) == 1
    assert "1 of " in caplog.text and "differ from their fingerprint at save time" in caplog.text


def test_metrics_have_no_duplicate_rows_after_a_resume(tmp_path, mesh):
    _run(tmp_path, mesh, steps=4, ckpt_every=2)
    import shutil

    shutil.rmtree(tmp_path / "ckpt" / "4")  # as if killed after step 4's metrics, before its save
    _run(tmp_path, mesh, steps=4, ckpt_every=2)
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl") if x.strip()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def _arith_cfg(**data):
    from prm_jax import config as config_lib

    cfg = config_lib.load_config(os.path.join(ROOT, "experiments", "arith_prm.py:bce,tiny"))
    config_lib.apply_overrides(cfg, ["--config.train.steps=2", "--config.train.ckpt_every=2"])
    with cfg.unlocked():  # a hand-made config may hold a typo: loop.run must refuse it
        cfg.data.update(data)
    return cfg


def test_training_on_data_without_the_objectives_targets_is_an_error(tmp_path, mesh):
    """BCE on GSM8K (no step labels) trained at loss 0 on 0 steps; now an error before the first step."""
    cfg = _arith_cfg(source="gsm8k", path=os.path.join(FIX, "gsm8k.jsonl"), tokenizer="char")
    with pytest.raises(DataError, match=r"objective 'bce' trains on the records' 'step_labels'.*gsm8k.jsonl"):
        loop.run(cfg, str(tmp_path), progress=False, mesh=mesh)
    cfg = _arith_cfg(source="gsm8k", path=os.path.join(FIX, "gsm8k.jsonl"), tokenizer="char")
    cfg.objective = "orm"
    with pytest.raises(DataError, match=r"objective 'orm' trains on the records' 'outcome'"):
        loop.run(cfg, str(tmp_path), progress=False, mesh=mesh)


def test_pav_targets_on_some_records_only_is_an_error_naming_both(tmp_path, mesh):
    """A record without `q` would train on zero PAV targets (or change the batch's keys mid-run)."""
    path = tmp_path / "some_q.jsonl"
    row = {"prompt": "a = 1. Find a.", "completions": ["a = 1"], "labels": [1]}
    path.write_text(json.dumps(dict(row, q=[0.75], v0=0.5)) + "\n" + json.dumps(row) + "\n")
    cfg = _arith_cfg(source="stepwise_jsonl", path=str(path), tokenizer="char")
    cfg.objective = "pav"
    with pytest.raises(
        DataError, match=r"'q_values': record 'stepwise-1' of .*some_q.jsonl has them but record 'stepwise-2' has none"
    ):
        loop.run(cfg, str(tmp_path / "w"), progress=False, mesh=mesh)


def test_a_loader_that_cannot_fill_a_batch_says_so_at_once(tmp_path, mesh):
    """Every record longer than seq_len: before, 100,000 retries at full CPU; now an error naming the
    file and the longest record."""
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "p" * 2000, "completions": ["x" * 200_000], "labels": [1]}) + "\n")
    cfg = _arith_cfg(source="stepwise_jsonl", path=str(path), tokenizer="char")
    with pytest.raises(DataError, match=r"no record of .*long.jsonl fits seq_len=.*202000 characters"):
        loop.run(cfg, str(tmp_path / "w"), progress=False, mesh=mesh)


def test_skipped_and_too_long_records_are_reported_and_logged(tmp_path, mesh, capsys):
    path = tmp_path / "mixed.jsonl"
    good = {"prompt": "a = 1. Find a.", "completions": ["a = 1"], "labels": [1]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"prompt": "q", "completions": ["y"], "labels": [3]}),
        json.dumps({"prompt": "b" * 400, "completions": ["z"], "labels": [0]}),
        json.dumps(good),
    ]
    path.write_text("\n".join(lines) + "\n")
    cfg = _arith_cfg(source="stepwise_jsonl", path=str(path), tokenizer="char", skip_bad=True)
    loop.run(cfg, str(tmp_path / "w"), progress=False, mesh=mesh)
    err = capsys.readouterr().err
    assert "[data] after the first batch" in err and '"too_long": 1' in err and '"skipped_bad": 2' in err, err
    assert "skipped 2 bad records" in err and "mixed.jsonl:2" in err
    rows = [json.loads(x) for x in open(tmp_path / "w" / "metrics.jsonl") if x.strip()]
    assert rows[-1]["data/skipped_bad"] == 2 and rows[-1]["data/too_long"] >= 1


def test_config_keys_are_checked_and_resume_compares_the_config(tmp_path, mesh):
    from prm_jax import config as config_lib

    cfg = _arith_cfg()
    with pytest.raises(
        KeyError, match=r"config.data.neutrall is not a data setting \(did you mean --config.data.neutral\?\)"
    ):
        config_lib.apply_overrides(cfg, ["--config.data.neutrall=negative"])
    with pytest.raises(KeyError, match=r"did you mean --config.optim.lr\?"):
        config_lib.apply_overrides(cfg, ["--config.optim.lrr=1"])
    bad = _arith_cfg(neutrall="negative")
    with pytest.raises(KeyError, match="did you mean config.data.neutral"):
        loop.run(bad, str(tmp_path / "typo"), progress=False, mesh=mesh)
    fmt = _arith_cfg(source="stepwise_jsonl", path=os.path.join(FIX, "stepwise.jsonl"), format="gsm8k")
    with pytest.raises(ValueError, match="data.format='gsm8k' is read only for source='tfds'"):
        loop.run(fmt, str(tmp_path / "fmt"), progress=False, mesh=mesh)
    wd = str(tmp_path / "run")
    loop.run(_arith_cfg(), wd, progress=False, mesh=mesh)
    wider = _arith_cfg()
    wider.model.d_model = 48
    with pytest.raises(ValueError, match=r"cannot resume .*model.d_model: 64 -> 48"):
        loop.run(wider, wd, progress=False, mesh=mesh)
    lr = _arith_cfg()
    lr.optim.lr = 1e-4
    lr.train.steps = 3
    with pytest.raises(ValueError, match=r"changed settings \(optim.lr: 0.003 -> 0.0001\).*--allow-config-change"):
        loop.run(lr, wd, progress=False, mesh=mesh)
    final = loop.run(lr, wd, progress=False, mesh=mesh, allow_config_change=True)
    assert final["step"] == 3


def test_bad_data_files_have_exact_messages(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        readers.read_all("stepwise_jsonl", str(tmp_path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.jsonl: the file is empty"):
        readers.read_all("stepwise_jsonl", str(empty))
    items = [
        {"id": f"x{i}", "problem": f"p{i}", "steps": ["a", "b"], "final_answer_correct": True, "label": -1}
        for i in range(5)
    ]
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(items).encode())
    assert len(readers.read_all("processbench", str(bom))) == 5
    cut = tmp_path / "cut.json"
    text = json.dumps(items)
    cut.write_text(text[: text.index('{"id": "x3"') + 10])
    with pytest.raises(DataError, match=r"cut.json:4: malformed JSON array at item 4.*the 3 items before it were read"):
        readers.read_all("processbench", str(cut))
    from prm_jax.data.records import SkipCounter

    skipped = SkipCounter()
    got = readers.read_all("processbench", str(cut), skip_bad=True, skipped=skipped)
    assert [r.id for r in got] == ["x0", "x1", "x2"] and skipped.total == 1  # before: 0 records
    from prm_jax.data import pipeline

    with pytest.raises(DataError, match="no records in nothing.jsonl"):
        pipeline.ListSource([], "nothing.jsonl")
    math = tmp_path / "math.jsonl"
    math.write_text(json.dumps({"problem": "1 - 1?", "solution": "It is $\\boxed{5}$.", "answer": 0}) + "\n")
    assert readers.read_all("math", str(math))[0].answer == "0"  # before: '5'


def _hf_folder(tmp_path, name="ckpt"):
    from prm_jax import hf, model

    cfg = model.ModelConfig.preset(
        "tiny", vocab_size=32, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, mlp_dim=64
    )
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    out = str(tmp_path / name)
    hf.save_checkpoint(out, cfg, jax.device_get(params))
    return out


def _rewrite(folder, fn):
    from safetensors.numpy import load_file, save_file

    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    fn(tensors)
    save_file(tensors, path)


def test_bad_hf_checkpoints_name_the_file_and_tensor(tmp_path, caplog):
    from prm_jax import hf

    good = _hf_folder(tmp_path)
    q = "model.layers.0.self_attn.q_proj.weight"
    wrong = _hf_folder(tmp_path, "wrong")
    _rewrite(wrong, lambda t: t.__setitem__(q, np.zeros((16, 32), np.float32)))
    with pytest.raises(ValueError, match=rf"tensor '{q}' in .*wrong has shape \(16, 32\), config implies \(32, 32\)"):
        hf.load_checkpoint(wrong)
    rank3 = _hf_folder(tmp_path, "rank3")
    _rewrite(rank3, lambda t: t.__setitem__(q, np.zeros((32, 32, 1), np.float32)))
    with pytest.raises(ValueError, match=r"has shape \(32, 32, 1\), config implies \(32, 32\)"):
        hf.load_checkpoint(rank3)
    extra = _hf_folder(tmp_path, "extra")
    _rewrite(extra, lambda t: t.__setitem__("model.layers.1.mlp.up_proj.weight", np.zeros((64, 32), np.float32)))
    with pytest.raises(
        ValueError, match=r"tensors of layers \[1\] are in the checkpoint but config.json says num_hidden_layers=1"
    ):
        hf.load_checkpoint(extra)
    unused = _hf_folder(tmp_path, "unused")
    _rewrite(unused, lambda t: t.__setitem__("model.rotary_emb.inv_freq", np.zeros((8,), np.float32)))
    with caplog.at_level(logging.WARNING):
        hf.load_checkpoint(unused)
    assert "model.rotary_emb.inv_freq" in " ".join(r.getMessage() for r in caplog.records)
    cut = _hf_folder(tmp_path, "cut")
    f = os.path.join(cut, "model.safetensors")
    open(f, "r+b").truncate(os.path.getsize(f) // 2)
    with pytest.raises(ValueError, match=r"cut/model.safetensors"):
        hf.load_checkpoint(cut)
    outside = _hf_folder(tmp_path, "outside")
    os.remove(os.path.join(outside, "model.safetensors"))
    keys = json.load(open(os.path.join(good, "config.json")))  # noqa: F841  (the config stays valid)
    from safetensors import safe_open

    with safe_open(os.path.join(good, "model.safetensors"), "numpy") as g:
        names = list(g.keys())
    with open(os.path.join(outside, "model.safetensors.index.json"), "w") as fh:
        json.dump({"weight_map": {n: "../ckpt/model.safetensors" for n in names}}, fh)
    with pytest.raises(ValueError, match=r"points to '../ckpt/model.safetensors', outside the checkpoint folder"):
        hf.load_checkpoint(outside)
    hf.load_checkpoint(good)  # the untouched folder still loads


def test_a_sigterm_whose_exception_is_swallowed_is_delivered_again():
    """CI showed the handler run inside jax's gc callback, which swallows exceptions ('Exception ignored
    in: _xla_gc_callback'): the run went on training. The handler re-sends the signal until a
    Preempted lands where it propagates."""
    import signal
    import time

    with loop._Preemption() as pre:
        try:
            pre._handle(signal.SIGTERM, None)
        except loop.Preempted:
            pass  # swallowed, as a gc callback does
        t0 = time.time()
        with pytest.raises(loop.Preempted):
            time.sleep(5)  # the re-sent SIGTERM raises here
        assert time.time() - t0 < 2
        pre.caught()
