"""Results tables: rows appended across runs, replaced by key, written as CSV, markdown and LaTeX."""

import csv

import pytest

from prm_jax import tables


def test_append_replaces_by_key_unions_columns_and_writes_three_views(tmp_path):
    t = str(tmp_path / "out" / "results.md")
    tables.append(t, {"checkpoint": "runs/a_1", "gsm8k F1 %": 62.51234, "n": 8}, key=("checkpoint",))
    tables.append(t, {"checkpoint": "runs/b", "gsm8k F1 %": 40.0, "math F1 %": 0.25}, key=("checkpoint",))
    files = tables.append(t, {"checkpoint": "runs/a_1", "gsm8k F1 %": 70.0, "n": 8}, key=("checkpoint",))
    assert files == {f: str(tmp_path / "out" / f"results.{f}") for f in ("md", "csv", "tex")}
    with open(files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    # the rerun of runs/a_1 replaced its row (now last); runs/b has no n, runs/a_1 no math column
    assert [r["checkpoint"] for r in rows] == ["runs/b", "runs/a_1"]
    assert rows[1] == {"checkpoint": "runs/a_1", "gsm8k F1 %": "70.0", "n": "8", "math F1 %": ""}
    assert tables.read_rows(files["tex"]) == rows  # any of the table's names finds its store
    md = open(files["md"]).read().splitlines()
    assert md[0] == "| checkpoint | gsm8k F1 % | n | math F1 % |"  # columns in first-seen order
    assert md[2] == "| runs/b | 40 |  | 0.25 |" and md[3] == "| runs/a_1 | 70 | 8 |  |"
    tex = open(files["tex"]).read()
    assert tex.startswith("\\begin{tabular}{lrrr}\n\\toprule\ncheckpoint & gsm8k F1 \\% & n & math F1 \\% \\\\")
    assert "runs/a\\_1 & 70 & 8 &  \\\\" in tex and tex.rstrip().endswith("\\bottomrule\n\\end{tabular}")


def test_append_needs_its_key_columns(tmp_path):
    with pytest.raises(ValueError, match=r"key columns \['checkpoint'\]"):
        tables.append(str(tmp_path / "r.md"), {"f1": 1.0}, key=("checkpoint",))
