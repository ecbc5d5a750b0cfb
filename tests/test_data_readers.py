"""Readers on fixtures copied from the real files, label settings, and every bad-input case."""

import json
import os

import numpy as np
import pytest

from prm_jax.data import readers as R
from prm_jax.data.records import DataError, Record, SkipCounter
from prm_jax.targets import rating_to_label

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def fx(name):
    return os.path.join(FIX, name)


def test_prm800k_raw_main_path_and_alternatives():
    recs = R.read_all("prm800k", fx("prm800k_raw.jsonl"))
    main = [r for r in recs if not r.meta.get("alternative")]
    alts = [r for r in recs if r.meta.get("alternative")]
    assert len(main) == 2
    m = main[0]
    # step 1: all five completions rated -1, none chosen: the human completion (unrated) continues the path
    assert m.steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert m.step_labels == [1.0, None, 1.0, 1.0, 1.0, 1.0] and m.answer == "29"
    first = [a for a in alts if a.id.startswith("prm800k-1-")]
    assert len(first) == 5 + 4
    a = next(a for a in first if a.id == "prm800k-1-s1c0")
    assert a.steps == m.steps[:1] + ["The first equation is 3p + e = 124, and the second equation is 5p + e = 182."]
    assert a.step_labels == [None, 0.0]
    neutral = next(a for a in first if a.id == "prm800k-1-s5c0")
    assert neutral.step_labels[-1] == 1.0 and len(neutral.steps) == 6
    neg = R.read_all("prm800k", fx("prm800k_raw.jsonl"), neutral="negative")
    assert next(a for a in neg if a.id == "prm800k-1-s5c0").step_labels[-1] == 0.0
    # line 2 gave up: six -1 completions then a human step at step 7, and null completions at step 8
    give_up = main[1]
    assert give_up.meta["finish_reason"] == "give_up" and len(give_up.steps) == 8
    assert give_up.step_labels == [1.0] * 7 + [None] and give_up.steps[7].startswith("By symmetry")
    assert len([a for a in alts if a.id.startswith("prm800k-2-s7")]) == 6


def test_prm800k_after_first_error_drop():
    line = {
        "question": {"problem": "p", "ground_truth_answer": "1"},
        "label": {
            "steps": [
                {"completions": [{"text": t, "rating": r}], "chosen_completion": 0}
                for t, r in [("s0", 1), ("s1", 0), ("s2", -1), ("s3", 1)]
            ]
        },
    }
    for neutral, afe, want in [
        ("positive", "keep", [1.0, 1.0, 0.0, 1.0]),
        ("positive", "drop", [1.0, 1.0, 0.0, None]),
        ("negative", "drop", [1.0, 0.0, None, None]),
        ("negative", "keep", [1.0, 0.0, 0.0, 1.0]),
    ]:
        (rec,) = R.LINE_PARSERS["prm800k"](line, 1, neutral=neutral, after_first_error=afe)
        assert rec.step_labels == want, (neutral, afe)
        ref = rating_to_label(np.array([1, 0, -1, 1]), neutral)
        assert [x for x in rec.step_labels if x is not None] == ref.tolist()[: len([x for x in want if x is not None])]


def test_prm800k_stepwise_rebuilds_the_raw_trajectory():
    recs = R.read_all("prm800k_stepwise", fx("prm800k_stepwise.jsonl"))
    chains = [r for r in recs if r.step_labels[0] is not None]
    assert len(chains) == 1 and len(recs) == 1 + 5 + 4
    raw = R.read_all("prm800k", fx("prm800k_raw.jsonl"))[0]
    assert chains[0].step_labels == raw.step_labels
    assert chains[0].steps[:5] == raw.steps[:5] and chains[0].problem == raw.problem
    alts = [r for r in recs if r.step_labels[0] is None]
    assert sorted(len(a.steps) for a in alts) == [2] * 5 + [6] * 4
    assert sorted(a.step_labels[-1] for a in alts) == [0.0] * 5 + [1.0] * 4
    rows = R.read_all("prm800k_stepwise", fx("prm800k_stepwise.jsonl"), group="row")
    assert len(rows) == 15 and rows[8].steps[-1].startswith("$5p+e-3p-e") and rows[8].step_labels == [None] * 3 + [1.0]


def test_math_shepherd():
    recs = R.read_all("math_shepherd", fx("math_shepherd.jsonl"))
    assert len(recs) == 3
    r = recs[0]
    assert r.problem.startswith("Janet pays $40/hour") and r.problem.endswith("in a year?")
    assert r.steps[0].startswith("Step 1: Janet spends 3 hours") and "ки" not in "".join(r.steps)
    assert r.step_labels == [1.0, 1.0, 1.0, 1.0, 0.0] and len(r.steps) == 5
    raw = json.loads(open(fx("math_shepherd.jsonl")).readline())
    assert raw["input"].count("ки") == 5


def test_processbench_array_and_jsonl(tmp_path):
    recs = R.read_all("processbench", fx("processbench_gsm8k.json"))
    assert [r.id for r in recs] == ["gsm8k-0", "gsm8k-200", "gsm8k-3"]
    assert recs[0].step_labels == [1.0, 0.0, None, None] and recs[0].first_error() == 1 and recs[0].outcome == 0.0
    assert recs[1].first_error() == -1 and recs[1].outcome == 1.0 and recs[1].step_labels == [1.0] * 8
    assert recs[2].first_error() == 2
    p = tmp_path / "pb.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in json.load(open(fx("processbench_gsm8k.json")))))
    assert R.read_all("processbench", str(p)) == recs


def test_generic_stepwise_and_outcome_jsonl():
    s = R.read_all("stepwise_jsonl", fx("stepwise.jsonl"))
    assert s[0].step_labels == [1.0] and s[0].outcome == 1.0 and s[0].answer == "5"
    assert s[1].step_labels == [1.0, 0.25] and s[1].q_values == [0.875, 0.125] and s[1].v0 == 0.5
    o = R.read_all("outcome_jsonl", fx("outcome.jsonl"))
    assert o[0].steps == ["2 + 3 = 5.", "The answer is 5."] and o[0].outcome == 1.0 and o[0].step_labels is None
    assert o[1].steps == ["2 * 4 = 6.", "The answer is 6."] and o[1].outcome == 0.0


def test_stepwise_jsonl_reads_an_outcome_file_with_step_labels(tmp_path):
    # prm_jax.labeling.sample_outcomes' records: `steps` (outcome_jsonl's name) and `exact_labels`
    p = tmp_path / "outcomes.jsonl"
    p.write_text(
        '{"prompt": "p", "steps": ["a", "b"], "correct": false, "exact_labels": [1.0, 0.0]}\n'
        '{"prompt": "q", "completions": ["c"], "steps": ["ignored"], "exact_labels": [1.0]}\n'
    )
    got = R.read_all("stepwise_jsonl", str(p), label_field="exact_labels")
    assert [r.steps for r in got] == [["a", "b"], ["c"]]  # `completions` wins where both are given
    assert [r.step_labels for r in got] == [[1.0, 0.0], [1.0]] and [r.outcome for r in got] == [0.0, None]


def test_gsm8k_and_math_answers():
    g = R.read_all("gsm8k", fx("gsm8k.jsonl"))
    assert g[0].answer == "18" and g[0].steps[-1].startswith("She makes 9 * 2") and g[0].step_labels is None
    m = R.read_all("math", fx("math500.jsonl"))
    assert m[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    h = R.read_all("math", fx("math.jsonl"))
    assert h[0].answer == "2" and h[0].meta["type"] == "Algebra"
    assert R.last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}.") == "x^{2}"
    assert R.last_boxed("no box") is None


BAD = {
    "malformed": ('{"prompt": "p", "completions": ["a"], "labels": [1]}\n{"prompt": oops\n', "malformed JSON", 2),
    "missing": ('{"prompt": "p", "labels": [1]}\n', "missing field 'completions'", 1),
    "range": ('{"prompt": "p", "completions": ["a", "b"], "labels": [1, 1.5]}\n', "out of range", 1),
    "empty": ('{"prompt": "p", "completions": [], "labels": []}\n', "empty step list", 1),
    "count": ('{"prompt": "p", "completions": ["a"], "labels": [1, 0]}\n', "2 step labels for 1 steps", 1),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_line_and_skip_counts(tmp_path, case):
    text, msg, line = BAD[case]
    good = '{"prompt": "q", "completions": ["x"], "labels": [0]}\n'
    p = tmp_path / f"{case}.jsonl"
    p.write_text(good + "\n" + text.replace("\n", "\n", 1) + good if case != "malformed" else good + text + good)
    want_line = line + (1 if case == "malformed" else 2)
    with pytest.raises(DataError, match=msg) as ei:
        R.read_all("stepwise_jsonl", str(p))
    assert ei.value.path == str(p) and ei.value.line == want_line, str(ei.value)
    assert f"{p}:{want_line}:" in str(ei.value)
    sk = SkipCounter()
    recs = R.read_all("stepwise_jsonl", str(p), skip_bad=True, skipped=sk)
    assert sk.total == 1 and len(recs) == (3 if case == "malformed" else 2)
    assert f":{want_line}:" in sk.examples[0]


def test_bad_input_other_formats(tmp_path):
    cases = [
        (
            "processbench",
            [{"problem": "p", "steps": ["a"], "label": 3, "final_answer_correct": True}],
            "label out of range",
        ),
        ("processbench", [{"problem": "p", "steps": [], "label": -1, "final_answer_correct": True}], "empty step list"),
        ("gsm8k", {"question": "q", "answer": "no final line"}, "####"),
        ("math", {"problem": "q", "solution": "no box"}, "boxed"),
        ("math_shepherd", {"input": "q Step 1: a ки", "label": "q Step 1: a *"}, "not '\\+' or '-'"),
        ("math_shepherd", {"input": "q Step 1: a ки", "label": "x Step 1: a +"}, "does not match"),
        (
            "prm800k",
            {
                "question": {"problem": "p"},
                "label": {"steps": [{"completions": [{"text": "a", "rating": 2}], "chosen_completion": 0}]},
            },
            "rating out of range",
        ),
        (
            "prm800k_stepwise",
            {"instruction": "p", "responses": [], "next_response": "a", "rating": 5, "is_preferred_response": True},
            "rating out of range",
        ),
        ("outcome_jsonl", {"prompt": "p", "response": "a"}, "missing field 'correct'"),
        ("outcome_jsonl", {"prompt": "p", "response": "a", "correct": "yes"}, "number or bool"),
    ]
    for i, (fmt, obj, msg) in enumerate(cases):
        p = tmp_path / f"{i}.{'json' if isinstance(obj, list) else 'jsonl'}"
        p.write_text(json.dumps(obj) if isinstance(obj, list) else "\n" + json.dumps(obj) + "\n")
        with pytest.raises(DataError, match=msg) as ei:
            R.read_all(fmt, str(p))
        assert ei.value.path == str(p) and ei.value.line == (1 if isinstance(obj, list) else 2), (fmt, str(ei.value))
        sk = SkipCounter()
        assert R.read_all(fmt, str(p), skip_bad=True, skipped=sk) == [] and sk.total == 1
    with pytest.raises(FileNotFoundError):
        R.read_all("gsm8k", str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown data format"):
        R.read_all("csv", fx("gsm8k.jsonl"))


def test_record_validation_and_json_round_trip():
    r = Record("p", ["a", "b"], [1.0, None], outcome=1.0, q_values=[0.5, 0.5], v0=0.1, meta={"k": 1})
    assert Record.from_json(r.to_json()) == r.validate()
    for bad, msg in [
        (dict(steps=[]), "empty step list"),
        (dict(step_labels=[2.0, 1.0]), "out of range"),
        (dict(outcome=True), "must be a number"),
        (dict(q_values=[0.5]), "1 q values"),
        (dict(problem=" "), "empty or non-string problem"),
        (dict(v0=float("nan")), "v0"),
    ]:
        kw = dict(problem="p", steps=["a", "b"], step_labels=[1.0, None])
        kw.update(bad)
        with pytest.raises(DataError, match=msg):
            Record(**kw).validate()


def test_stepwise_jsonl_from_labeling_with_hard_labels(tmp_path):
    # the shape prm_jax.labeling.Labelled.to_json writes: soft `labels`, `hard_labels`, null q / v0, meta
    obj = {
        "prompt": "p",
        "completions": ["a", "b"],
        "labels": [0.5, 0.0],
        "hard_labels": [1.0, 0.0],
        "q": None,
        "v0": None,
        "correct": False,
        "answer": "3",
        "meta": {"k": 8},
    }
    p = tmp_path / "mc.jsonl"
    p.write_text(json.dumps(obj) + "\n")
    (soft,) = R.read_all("stepwise_jsonl", str(p))
    (hard,) = R.read_all("stepwise_jsonl", str(p), label_field="hard_labels")
    assert soft.step_labels == [0.5, 0.0] and hard.step_labels == [1.0, 0.0]
    assert soft.q_values is None and soft.v0 is None and soft.meta == {"k": 8} and soft.outcome == 0.0


def _raw_line(ratings_path, alt_at, alt_rating):
    """A raw PRM800K line: the chosen path rated `ratings_path`, one alternative at step `alt_at`."""
    steps = []
    for k, r in enumerate(ratings_path):
        comps = [{"text": f"step {k}", "rating": r}]
        if k == alt_at:
            comps.append({"text": f"alt {k}", "rating": alt_rating})
        steps.append({"completions": comps, "chosen_completion": 0})
    return {
        "question": {"problem": "What is 1+1?", "ground_truth_answer": "2"},
        "label": {"steps": steps, "finish_reason": "found_error"},
    }


@pytest.mark.parametrize("neutral", ["positive", "negative"])
def test_prm800k_alternatives_follow_after_first_error(tmp_path, neutral):
    """An alternative step after the chosen path's first error continues a wrong prefix: with
    after_first_error='drop' it is unlabelled like the path's own later steps (before: always kept)."""
    path = tmp_path / "raw.jsonl"
    # path ratings 1, 0, -1, 1: the first error is step 1 under neutral=negative, step 2 under positive
    lines = [_raw_line([1, 0, -1, 1], alt_at=k, alt_rating=1) for k in (1, 2, 3)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    first_err = 1 if neutral == "negative" else 2
    for afe in ("keep", "drop"):
        recs = R.read_all("prm800k", str(path), neutral=neutral, after_first_error=afe)
        alts = {int(r.id.split("-s")[1].split("c")[0]): r for r in recs if r.meta.get("alternative")}
        main = [r for r in recs if not r.meta.get("alternative")][0]
        assert set(alts) == {1, 2, 3} and len(recs) == 6  # the same records under either setting
        for k, a in alts.items():
            assert a.step_labels[:k] == [None] * k and a.steps[-1] == f"alt {k}"
            want = None if (afe == "drop" and k > first_err) else 1.0
            assert a.step_labels[k] == want, (afe, k)
        if afe == "drop":
            assert main.step_labels[first_err + 1 :] == [None] * (3 - first_err)


def test_math_shepherd_text_after_last_tag_is_bad_input(tmp_path):
    path = tmp_path / "ms.jsonl"
    row = {
        "input": "Q? Step 1: a ки Step 2: b ки The answer is 3",
        "label": "Q? Step 1: a + Step 2: b - The answer is 3",
    }
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"ms.jsonl:1: text after the last 'ки' tag .*The answer is 3"):
        R.read_all("math_shepherd", str(path))
    skipped = SkipCounter()
    assert R.read_all("math_shepherd", str(path), skip_bad=True, skipped=skipped) == [] and skipped.total == 1
    # trailing whitespace is not text
    row = {"input": "Q? Step 1: a ки Step 2: b ки \n", "label": "Q? Step 1: a + Step 2: b - \n"}
    path.write_text(json.dumps(row) + "\n")
    assert [r.step_labels for r in R.read_all("math_shepherd", str(path))] == [[1.0, 0.0]]


def test_whitespace_only_steps_are_counted(tmp_path):
    from prm_jax.data import pipeline, stats
    from prm_jax.data.arith import CharTokenizer

    recs = [Record("a = 1. Find a.", ["x", "  ", "y"], [1.0, 1.0, 1.0]), Record("b", ["\n"], [0.0])]
    s = stats.record_stats(recs, CharTokenizer(), marker="<step>")
    assert s["whitespace_only_steps"] == 2
    it = pipeline.TrainIterator(
        pipeline.ListSource(recs), CharTokenizer(), pipeline.Encoding("<step>", 64, 4), batch_size=2, shuffle=False
    )
    next(it)
    assert it.counts["whitespace_only_steps"] == 2


def test_truncated_json_line_reports_its_real_column(tmp_path):
    """A line cut before its newline: the column is where the text ends, not 'column 1' of a next line."""
    path = tmp_path / "cut.jsonl"
    good = json.dumps({"prompt": "p", "completions": ["a"], "labels": [1]})
    cut = good[: good.index(",")]  # '{"prompt": "p"': the object is never closed
    path.write_text(good + "\n" + cut + "\n")
    with pytest.raises(DataError) as e:
        R.read_all("stepwise_jsonl", str(path))
    assert "cut.jsonl:2:" in str(e.value) and f"(column {len(cut) + 1})" in str(e.value), str(e.value)


def _write_tables(rows, tmp_path, stem):
    """Writes `rows` as parquet, an Arrow stream (.arrow, as `datasets` saves), an Arrow IPC file and
    feather; returns their paths."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    t = pa.Table.from_pylist(rows)
    out = {k: str(tmp_path / f"{stem}.{k}") for k in ("parquet", "arrow", "ipc", "feather")}
    pq.write_table(t, out["parquet"])
    with pa.ipc.new_stream(out["arrow"], t.schema) as w:
        w.write_table(t, max_chunksize=2)  # several record batches
    with pa.ipc.new_file(out["ipc"], t.schema) as w:
        w.write_table(t, max_chunksize=2)
    feather.write_feather(t, out["feather"])
    return out


@pytest.mark.parametrize(
    "fmt,name", [("gsm8k", "gsm8k.jsonl"), ("math", "math500.jsonl"), ("math_shepherd", "math_shepherd.jsonl")]
)
def test_parquet_and_arrow_files_read_as_their_jsonl(tmp_path, fmt, name):
    rows = [obj for _, obj in R.iter_json_items(fx(name))]
    want = R.read_all(fmt, fx(name))
    for kind, path in _write_tables(rows, tmp_path, "d").items():
        assert R.read_all(fmt, path) == want, kind


def test_prm800k_stepwise_train_parquet_fixture_reads_as_its_rows_in_jsonl(tmp_path):
    """The shared PRM800K train split is parquet (the issue's `'utf-8' codec can't decode`): its first
    problem's 11 rows read as the same records as those rows written as jsonl."""
    import pyarrow.parquet as pq

    path = fx("prm800k_stepwise_train.parquet")
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 11 and rows[0]["instruction"] == "How many seconds are in 7.8 minutes?"
    j = tmp_path / "rows.jsonl"
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = R.read_all("prm800k_stepwise", path)
    assert recs == R.read_all("prm800k_stepwise", str(j)) and len(recs) == 7


def test_table_files_bad_input_names_the_file_and_row(tmp_path):
    bad = tmp_path / "notes.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataError, match=r"notes.parquet: not a readable .parquet file"):
        R.read_all("gsm8k", str(bad))
    rows = [obj for _, obj in R.iter_json_items(fx("gsm8k.jsonl"))]
    rows[1] = {**rows[1], "answer": "no final answer line"}
    path = _write_tables(rows, tmp_path, "g")["parquet"]
    with pytest.raises(DataError, match=r"g.parquet:2: .*####"):
        R.read_all("gsm8k", path)
    with pytest.raises(FileNotFoundError, match="missing.arrow"):
        R.read_all("gsm8k", str(tmp_path / "missing.arrow"))


def test_hub_datasets_go_through_load_dataset(monkeypatch):
    """`hub:ID[:CONFIG]:SPLIT` calls datasets.load_dataset(ID, CONFIG, split=SPLIT) (faked: no network)."""
    import sys
    import types

    rows = [obj for _, obj in R.iter_json_items(fx("gsm8k.jsonl"))]
    calls = []
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **kw: calls.append((a, kw)) or list(rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert R.read_all("gsm8k", "hub:openai/gsm8k:main:test") == R.read_all("gsm8k", fx("gsm8k.jsonl"))
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]
    with pytest.raises(ValueError, match="hub:ID:SPLIT or hub:ID:CONFIG:SPLIT"):
        R.read_all("gsm8k", "hub:openai/gsm8k")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(ValueError, match="pip install datasets"):
        R.read_all("gsm8k", "hub:openai/gsm8k:test")


def test_data_formats_examples_read_as_records(tmp_path):
    """Every reader format is documented in `prm-jax data formats`, and its example row reads."""
    from prm_jax.data import formats

    assert set(formats.FORMATS) == set(R.FORMATS)
    for name, (_, example) in formats.FORMATS.items():
        p = tmp_path / f"{name}.jsonl"
        p.write_text(json.dumps(example) + "\n")
        recs = R.read_all(name, str(p))
        assert recs and all(r.steps for r in recs), name
    text = formats.describe()
    assert all(f"\n{name}\n  fields:" in text for name in R.FORMATS)
