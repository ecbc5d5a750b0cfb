"""`prm-jax data stats` / `prepare` on fixtures: counts checked against hand counts, bad input, skip counts."""

import json
import os

from prm_jax.cli import main

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _run(capsys, *argv):
    rc = main(["data", *argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_stats_processbench_counts_and_lengths(capsys):
    path = os.path.join(FIX, "processbench_gsm8k.json")
    rc, s, _ = _run(capsys, "stats", "--format", "processbench", "--path", path)
    assert rc == 0
    items = json.load(open(path))
    assert s["examples"] == 3 and s["steps"] == sum(len(x["steps"]) for x in items) == 16
    assert s["examples_with_error"] == 2 and s["first_error_histogram"] == {"1": 1, "2": 1}
    # labels: gsm8k-0 (error at 1 of 4), gsm8k-200 (8 right), gsm8k-3 (error at 2 of 4)
    assert (s["positive_steps"], s["negative_steps"], s["unlabelled_steps"]) == (1 + 8 + 2, 2, 2 + 1)
    assert s["outcome"] == {"negative": 2, "positive": 1}
    # char lengths: bos + problem + "\n" + each step + "\n\n" (all fixture characters are single ids)
    lens = sorted(1 + len(x["problem"]) + 1 + sum(len(t) + 2 for t in x["steps"]) for x in items)
    assert s["token_length"]["max"] == lens[-1] and s["token_length"]["p50"] == lens[1]
    assert s["tokenizer"].startswith("char") and s["skipped"]["total"] == 0


def test_stats_arith_error_rates(capsys):
    rc, s, _ = _run(capsys, "stats", "--format", "arith", "--count", "300", "--seed", "4")
    assert rc == 0 and s["examples"] == 300 and s["unlabelled_steps"] == 0
    assert s["step_error_rate"] == round(s["negative_steps"] / s["steps"], 4)
    assert 0.3 <= s["solutions_with_error_rate"] <= 0.5 and s["marker"] == "<step>"
    assert sum(s["first_error_histogram"].values()) == s["examples_with_error"]


def test_stats_bad_input_and_skip_bad(capsys, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "q", "answer": "x\\n#### 4"}\n{"question": "q2", "answer": "no answer"}\n{oops\n')
    rc, _, err = _run(capsys, "stats", "--format", "gsm8k", "--path", str(p))
    assert rc == 2 and f"{p}:2:" in err and "####" in err
    rc, s, _ = _run(capsys, "stats", "--format", "gsm8k", "--path", str(p), "--skip-bad")
    assert rc == 0 and s["examples"] == 1 and s["skipped"]["total"] == 2
    assert any(f"{p}:3: malformed JSON" in m for m in s["skipped"]["first"])


def test_prepare_then_read(capsys, tmp_path):
    rc, info, _ = _run(
        capsys,
        "prepare",
        "--format",
        "math_shepherd",
        "--path",
        os.path.join(FIX, "math_shepherd.jsonl"),
        "--out",
        str(tmp_path),
        "--split",
        "test",
    )
    assert rc == 0 and info["test"] == 3
    from prm_jax.data.tfds_builders import data_source

    src = data_source(str(tmp_path), "math_shepherd", "test")
    assert len(src) == 3 and sorted(len(src[i].steps) for i in range(3)) == [2, 3, 5]
    assert sorted(src[i].id for i in range(3)) == ["math_shepherd-1", "math_shepherd-2", "math_shepherd-3"]


def test_prepare_splits_and_refuses_to_overwrite(capsys, tmp_path):
    pb = os.path.join(FIX, "processbench_gsm8k.json")
    rc, info, _ = _run(
        capsys,
        "prepare",
        "--format",
        "processbench",
        "--path",
        f"gsm8k={pb}",
        "--path",
        f"other={pb}",
        "--out",
        str(tmp_path),
    )
    assert rc == 0 and (info["gsm8k"], info["other"]) == (3, 3)
    rc, _, err = _run(capsys, "prepare", "--format", "processbench", "--path", pb, "--out", str(tmp_path))
    assert rc == 2 and "already prepared" in err
    rc, info, _ = _run(capsys, "prepare", "--format", "arith", "--count", "20", "--out", str(tmp_path))
    assert rc == 0 and info["train"] == 20


def test_stats_reports_the_char_tokenizers_unknown_share(capsys, tmp_path):
    from prm_jax.data.arith import CharTokenizer

    rows = [{"prompt": "Soit π ≈ 3.14, é?", "completions": ["x = π · 2", "x ≈ 6.28"], "labels": [True, True]}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    rc, s, _ = _run(capsys, "stats", "--format", "stepwise_jsonl", "--path", str(path))
    assert rc == 0, _
    text = rows[0]["prompt"] + "".join(rows[0]["completions"])
    want = sum(ch not in CharTokenizer.CHARS for ch in text)  # π, ≈, é, π, ·, ≈
    assert s["unknown_chars"] == want == 6 and 0.05 < s["unknown_char_share"] < 0.5
    rc, s, _ = _run(capsys, "stats", "--format", "arith", "--count", "20")
    assert s["unknown_chars"] == 0 and s["unknown_char_share"] == 0.0


def test_training_warns_once_about_unknown_characters(capsys):
    from prm_jax import loop
    from prm_jax.data.arith import CharTokenizer

    tok = CharTokenizer()
    tok.encode("a = 1. b = a + 1.")
    loop._warn_unknown_chars(tok)
    assert capsys.readouterr().err == ""  # nothing unknown: silent
    tok.encode("ééé")
    loop._warn_unknown_chars(tok)
    assert "mapped 3 of 20 characters (15.0%)" in capsys.readouterr().err
