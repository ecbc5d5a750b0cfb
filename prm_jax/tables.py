"""Results tables for a paper draft: one row per checkpoint (and method), appended across runs.

`append(path, row, key)` keeps the table's rows in `<path stem>.csv` (the store: full-precision
numbers, readable by pandas) and rewrites the markdown (`.md`) and LaTeX (`.tex`, booktabs) views
beside it. A row whose key columns equal an earlier row's replaces it (a rerun updates its row);
columns are the union over rows, in first-seen order, blank where a row has none.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

FORMATS = ("md", "csv", "tex")


def paths(path: str) -> dict[str, str]:
    """Returns {format: file} for a table named by any of its files (or a stem)."""
    stem, ext = os.path.splitext(path)
    if ext.lstrip(".") not in FORMATS:
        stem = path
    return {f: f"{stem}.{f}" for f in FORMATS}


def read_rows(path: str) -> list[dict]:
    """Returns the table's rows (strings, as stored in its CSV; [] when there is none yet)."""
    store = paths(path)["csv"]
    if not os.path.exists(store):
        return []
    with open(store, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def _show(v: str) -> str:
    """A CSV cell as a table shows it: numbers with 4 significant digits."""
    try:
        x = float(v)
    except ValueError:
        return v
    return v if v.strip().lstrip("-").isdigit() else f"{x:.4g}"


def markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Returns a GitHub-flavoured markdown table of `rows`."""
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_show(r.get(c, "")).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def latex(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Returns a booktabs `tabular` of `rows` (text columns left-aligned, numbers right-aligned)."""

    def numeric(c):
        vals = [r.get(c, "") for r in rows if r.get(c, "") != ""]
        try:
            [float(v) for v in vals]
        except ValueError:
            return False
        return bool(vals)

    align = "".join("r" if numeric(c) else "l" for c in columns)
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(_tex(c) for c in columns) + r" \\", "\\midrule"]
    lines += [" & ".join(_tex(_show(r.get(c, ""))) for c in columns) + r" \\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def append(path: str, row: dict, key: Sequence[str]) -> dict[str, str]:
    """Adds `row` to the table at `path` (replacing the row with the same `key` values); returns the
    {format: file} written."""
    missing = [k for k in key if k not in row]
    if missing:
        raise ValueError(f"table row lacks its key columns {missing}")
    files = paths(path)
    rows = read_rows(path)
    new = {k: _cell(v) for k, v in row.items()}
    ident = tuple(new[k] for k in key)
    rows = [r for r in rows if tuple(r.get(k, "") for k in key) != ident] + [new]
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    os.makedirs(os.path.dirname(os.path.abspath(files["csv"])), exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    texts = {"csv": buf.getvalue(), "md": markdown(rows, columns), "tex": latex(rows, columns)}
    for f, text in texts.items():
        tmp = files[f] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, files[f])
    return files
