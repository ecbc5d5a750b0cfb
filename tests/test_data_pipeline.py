"""The loader: batch contract, resume from a saved state, host sharding, pairs, TFDS source, no grain/tfds."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prm_jax.data import arith, pipeline as P, readers
from prm_jax.data.arith import CharTokenizer

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOK = CharTokenizer()
ARITH = {"source": "arith", "arith": {"min_steps": 2, "max_steps": 3}}


def _it(cfg, **kw):
    args = dict(batch_size=4, seq_len=160, max_steps=4, seed=1, process_index=0, process_count=1)
    args.update(kw)
    return P.make_train_iterator(cfg, TOK, **args)


def test_arith_batch_contract_and_labels_match_verifier():
    b = next(_it(ARITH))
    assert b["tokens"].shape == (4, 160) and b["tokens"].dtype == np.int32
    for k, shape, dt in [
        ("segment_ids", (4, 160), np.int32),
        ("positions", (4, 160), np.int32),
        ("step_ids", (4, 160), np.int32),
        ("response_mask", (4, 160), np.bool_),
        ("step_pos", (4, 4), np.int32),
        ("step_labels", (4, 4), np.float32),
        ("step_mask", (4, 4), np.bool_),
        ("outcome", (4,), np.float32),
    ]:
        assert b[k].shape == shape and b[k].dtype == dt, k
    for row in range(4):
        n = int((b["segment_ids"][row] > 0).sum())
        text = TOK.decode(b["tokens"][row, 1:n])
        problem, rest = text.split("\n", 1)
        steps = rest.split(TOK.STEP)[:-1]
        want = [float(x) for x in arith.check_steps(problem, steps)]
        T = len(steps)
        assert b["step_labels"][row, :T].tolist() == want and b["step_mask"][row, :T].all()
        assert not b["step_mask"][row, T:].any() and (b["step_pos"][row, T:] == -1).all()
        assert (b["tokens"][row, b["step_pos"][row, :T]] == TOK.step_id).all()
        assert b["outcome"][row] == float(arith.is_correct(problem, steps))


def _collect(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("pack", [False, True])
def test_state_restore_resumes_at_same_record(pack):
    recs = readers.read_all("prm800k_stepwise", os.path.join(FIX, "prm800k_stepwise.jsonl")) + readers.read_all(
        "processbench", os.path.join(FIX, "processbench_gsm8k.json")
    )
    src = P.ListSource(recs)
    enc = P.Encoding(marker="\n\n", seq_len=1400, max_steps=12)

    def make():
        return P.TrainIterator(src, TOK, enc, batch_size=2, seed=5, pack=pack)

    it = make()
    _collect(it, 3)  # 6+ records: crosses into epoch 1 (13 records) after 7 batches
    state = json.loads(json.dumps(it.get_state()))
    after = _collect(it, 6)
    it2 = make()
    it2.set_state(state)
    for a, b in zip(after, _collect(it2, 6)):
        _same(a, b)
    assert it.get_state() == it2.get_state()
    assert it.get_state()["epoch"] >= 1 or pack
    with pytest.raises(ValueError, match="seed"):
        P.TrainIterator(src, TOK, enc, batch_size=2, seed=6).set_state(state)


def test_arith_state_restore_and_packing():
    it = _it(dict(ARITH, pack=True), seq_len=512, max_steps=12)
    b = next(it)
    assert (b["num_examples"] >= 2).all() and b["segment_ids"].max() >= 2
    state = it.get_state()
    nxt = next(it)
    it2 = _it(dict(ARITH, pack=True), seq_len=512, max_steps=12)
    it2.set_state(state)
    _same(nxt, next(it2))


def test_host_shards_are_disjoint_and_cover_an_epoch():
    src = P.ListSource([readers.Record(f"p{i}", ["s"], [1.0], id=str(i)) for i in range(10)])
    enc = P.Encoding(marker="\n\n", seq_len=16, max_steps=2)
    seen = []
    for p in range(3):
        it = P.TrainIterator(src, TOK, enc, batch_size=1, seed=0, process_index=p, process_count=3, repeat=False)
        seen.append([TOK.decode(b["tokens"][0][1:3]).strip() for b in it])
    flat = sorted(x for s in seen for x in s)
    assert flat == sorted(f"p{i}" for i in range(10)) and [len(s) for s in seen] == [4, 3, 3]
    it = P.TrainIterator(src, TOK, enc, batch_size=4, seed=0, shuffle=False, repeat=False)
    last = list(it)[-1]
    assert last["tokens"].shape == (4, 16) and (last["segment_ids"][2:] == 0).all()
    assert last["num_examples"].tolist() == [1, 1, 0, 0] and not last["step_mask"][2:].any()
    # arith stream: host p takes records p, p + P, ...
    a0 = P.make_train_iterator(
        ARITH, TOK, batch_size=1, seq_len=160, max_steps=4, seed=2, process_index=1, process_count=2
    )
    rec = arith.make_record(arith.ArithConfig(min_steps=2, max_steps=3), 2, 1)
    assert TOK.decode(next(a0)["tokens"][0]).startswith("<bos>" + rec.problem)


def test_dpo_pairs_arith_and_outcome_file():
    b = next(_it(dict(ARITH, pair=True)))
    assert {"rejected_tokens", "rejected_step_labels", "rejected_outcome"} <= set(b)
    assert (b["outcome"] == 1.0).all() and (b["rejected_outcome"] == 0.0).all()
    assert (b["tokens"][:, :40] == b["rejected_tokens"][:, :40]).all()  # same problem
    cfg = {"source": "outcome_jsonl", "path": os.path.join(FIX, "outcome.jsonl"), "pair": True, "marker": "\n\n"}
    with pytest.raises(ValueError, match="no problem has both"):
        _it(cfg)


def test_too_long_and_skip_bad_are_counted(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(
        '{"prompt": "a", "completions": ["x"], "labels": [1]}\n{"prompt": "b", "completions": ["y"], '
        '"labels": [7]}\n{"prompt": "' + "c" * 300 + '", "completions": ["z"], "labels": [0]}\n'
    )
    cfg = {"source": "stepwise_jsonl", "path": str(p), "marker": "\n\n", "skip_bad": True, "repeat": False}
    it = _it(cfg, seq_len=64)
    batches = list(it)
    assert it.skipped.total == 1 and it.get_state()["counts"]["too_long"] == 1
    assert sum(int((b["segment_ids"].max(axis=1) > 0).sum()) for b in batches) == 1
    with pytest.raises(readers.DataError, match=":2: label 0 out of range"):
        _it(dict(cfg, skip_bad=False))


def test_tfds_prepared_source(tmp_path):
    from prm_jax.data import tfds_builders as B

    info = B.prepare("processbench", {"gsm8k": [os.path.join(FIX, "processbench_gsm8k.json")]}, str(tmp_path))
    assert info["gsm8k"] == 3
    cfg = {
        "source": "tfds",
        "path": str(tmp_path),
        "format": "processbench",
        "split": "gsm8k",
        "marker": "\n\n",
        "repeat": False,
        "shuffle": False,
    }
    it = _it(cfg, seq_len=2048, max_steps=12, batch_size=3)
    b = next(it)
    g = B.data_source(str(tmp_path), "processbench", "gsm8k", backend="grain")
    t = B.data_source(str(tmp_path), "processbench", "gsm8k", backend="tfds")
    assert [g[i] for i in range(3)] == [t[i] for i in range(3)] and g.backend == "grain"
    assert sorted(g[i].id for i in range(3)) == ["gsm8k-0", "gsm8k-200", "gsm8k-3"]
    want = {r.id: r for r in readers.read_all("processbench", os.path.join(FIX, "processbench_gsm8k.json"))}
    assert all(g[i] == want[g[i].id] for i in range(3))
    assert sorted(b["step_mask"].sum(axis=1).tolist()) == [2, 3, 8]  # labels end at the first error


def test_arith_loader_imports_without_grain_and_tfds():
    code = (
        "import sys; sys.modules['grain'] = None; sys.modules['tensorflow_datasets'] = None\n"
        "sys.modules['array_record'] = None\n"
        "from prm_jax.data import pipeline, arith\n"
        "it = pipeline.make_train_iterator({'source': 'arith'}, arith.CharTokenizer(), batch_size=2, seq_len=128,"
        " max_steps=6, seed=0, process_index=0, process_count=1)\n"
        "print(next(it)['tokens'].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(2, 128)" in out.stdout


def test_evaluation_reads_a_held_out_split_by_problem(tmp_path):
    """Evaluation never reads the training records: without a split it is an error; eval_frac holds
    problems out by hash (disjoint from training, for files and the arith stream); eval_path reads a file."""
    from prm_jax.data import pipeline
    from prm_jax.data.records import Record

    path = tmp_path / "train.jsonl"
    recs = [Record(f"problem {i}", [f"s{i}"], [1.0]) for i in range(200)]
    path.write_text(
        "".join(json.dumps({"prompt": r.problem, "completions": r.steps, "labels": r.step_labels}) + "\n" for r in recs)
    )
    cfg = {"source": "stepwise_jsonl", "path": str(path)}
    with pytest.raises(ValueError, match="held-out split"):
        pipeline.build_source(cfg, role="eval")
    cfg["eval_frac"] = 0.2
    train = {r.problem for r in pipeline.build_source(cfg, role="train").records}
    ev = {r.problem for r in pipeline.build_source(cfg, role="eval").records}
    assert not train & ev and train | ev == {r.problem for r in recs}
    assert 20 <= len(ev) <= 60  # about 20% of 200
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"prompt": "other", "completions": ["x"], "labels": [0]}) + "\n")
    only = pipeline.build_source({"source": "stepwise_jsonl", "path": str(path), "eval_path": str(held)}, role="eval")
    assert [r.problem for r in only.records] == ["other"]
    assert "held-out file" in pipeline.split_description({"eval_path": str(held)})
    # the arith stream: the two roles see disjoint problems
    a_cfg = {"source": "arith", "eval_frac": 0.3}
    tok = arith.CharTokenizer()
    seen = {}
    for role in ("train", "eval"):
        it = pipeline.make_train_iterator(
            a_cfg, tok, batch_size=32, seq_len=256, max_steps=8, seed=0, process_index=0, process_count=1, role=role
        )
        probs = set()
        for _ in range(3):
            b = next(it)
            for row in b["tokens"]:
                text = tok.decode([t for t in row if t != tok.pad_id])
                probs.add(text.split("\n")[0])
        seen[role] = probs
        assert it.counts["held_out"] > 0
    assert seen["train"] and seen["eval"] and not seen["train"] & seen["eval"]
