"""Readers, one per file format, yielding `Record`s (pure Python: no tfds, no grain).

Every reader takes a path and options and yields records; bad input raises `DataError` naming the
file and line (or the item of a JSON array), or with `skip_bad=True` is skipped and counted in the
`SkipCounter` passed as `skipped`. Label settings for PRM800K (`neutral`, `after_first_error`) use
`prm_jax.targets`; after_first_error='drop' makes the steps after the first error unlabelled (None).

Formats (`FORMATS`):
  prm800k            raw phase files: one labelled trajectory per line. The main path follows
                     `chosen_completion` (or `human_completion`, unlabelled, when none is chosen);
                     every other rated completion at a step becomes its own record: the main path's
                     earlier steps as an unlabelled prefix plus that alternative step, labelled
                     (neutral= as on the main path; with after_first_error='drop' an alternative
                     after the main path's first error is kept as a record, its step unlabelled,
                     so the record count does not depend on the setting).
  prm800k_stepwise   one row per rated step (`instruction, responses, next_response, rating,
                     is_preferred_response`). group='solution' (default) rebuilds each trajectory:
                     preferred rows that extend the current chain form one record, other rows become
                     prefix + step records as above; group='row' gives one prefix + step record a row.
  math_shepherd      `input` with steps closed by `ки`, `label` the same text with + / - per tag;
                     text after the last tag is bad input (it would be an unlabelled step).
Whitespace-only steps are kept (a step that is its marker alone) and counted: `data stats`
reports `whitespace_only_steps`, the training loader's counts too.
  processbench       `steps`, `label` (earliest wrong step, -1 none), `final_answer_correct`; steps
                     after the first error are unlabelled. JSON array files or jsonl.
  stepwise_jsonl     `prompt`, `completions` (or `steps`), `labels` (bool or float in [0, 1]; another
                     field with label_field=, e.g. 'hard_labels' of prm_jax.labeling), optional
                     `q` (PAV Q per step), `v0`, `correct`, `answer`, `id`, `meta`.
  outcome_jsonl      `prompt`, `response` (split on blank lines) or `steps`, `correct`, optional `answer`.
  gsm8k              `question`, `answer` ending in `#### N`; steps = solution lines, unlabelled.
  math               `problem`, `solution` (answer = `answer` field or the last \\boxed{}); steps =
                     paragraphs, unlabelled.

Every format is read from .jsonl, .json (an array), .parquet or Arrow (.arrow, .feather) files, or
from a Hub dataset `hub:ID[:CONFIG]:SPLIT` (`iter_items`); the fields are the same in each container.
Row numbers stand in for line numbers in the messages of parquet / Arrow / Hub rows.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Callable, Iterator

from prm_jax.data.records import DataError, Record, SkipCounter

FORMATS = (
    "prm800k",
    "prm800k_stepwise",
    "math_shepherd",
    "processbench",
    "stepwise_jsonl",
    "outcome_jsonl",
    "gsm8k",
    "math",
)
MS_TAG = "ки"


TABLE_EXTS = (".parquet", ".arrow", ".feather", ".ipc")
HUB_PREFIX = "hub:"


def iter_items(path: str) -> Iterator[tuple[int, object]]:
    """Yields (line / item / row number, record dict) of a data file of any supported container.

    .jsonl and .json (an array) files are read as JSON (`iter_json_items`); .parquet, .arrow,
    .feather and .ipc files through pyarrow (rows numbered from 1, in file order; `.arrow` as the
    `datasets` library saves it, an Arrow stream, or an Arrow IPC file); `hub:ID[:CONFIG]:SPLIT` loads a
    Hugging Face Hub dataset with `datasets.load_dataset` (needs the network and `pip install datasets`).
    """
    path = str(path)
    if path.startswith(HUB_PREFIX):
        yield from _iter_hub(path)
    elif path.lower().endswith(TABLE_EXTS):
        yield from _iter_table(path)
    else:
        yield from iter_json_items(path)


def _iter_table(path: str) -> Iterator[tuple[int, object]]:
    """Yields (row number, row dict) of a parquet or Arrow file, one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    if os.path.isdir(path):
        raise DataError("is a directory, not a data file", path=path)
    try:
        if path.lower().endswith(".parquet"):
            batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        else:
            try:
                batches = iter(pa.ipc.open_stream(pa.memory_map(path)))
            except pa.ArrowInvalid:
                batches = (
                    b
                    for f in [pa.ipc.open_file(pa.memory_map(path))]
                    for b in map(f.get_batch, range(f.num_record_batches))
                )
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable {os.path.splitext(path)[1]} file ({e})", path=path) from None
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row
    if n == 0:
        raise DataError("the file has no rows: no records", path=path)


def _iter_hub(spec: str) -> Iterator[tuple[int, object]]:
    """Yields (row number, row dict) of `hub:ID[:CONFIG]:SPLIT` through datasets.load_dataset."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"{spec!r}: a Hub dataset is hub:ID:SPLIT or hub:ID:CONFIG:SPLIT, e.g. hub:openai/gsm8k:main:test"
        )
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{spec}: reading a Hub dataset needs the datasets library (pip install datasets)") from None
    name, *config, split = parts
    ds = datasets.load_dataset(name, *config, split=split)
    for n, row in enumerate(ds, start=1):
        yield n, dict(row)


def iter_json_items(path: str) -> Iterator[tuple[int, object]]:
    """Yields (line number, parsed object) for jsonl, or (item number, object) for a JSON array file.

    A UTF-8 byte-order mark is accepted. A JSON array is decoded item by item, so a truncated or
    broken array keeps the items before the break and then raises DataError naming the item.
    A missing path, a directory or an empty file is a DataError too.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    if os.path.isdir(path):
        raise DataError("is a directory, not a data file (give the .json / .jsonl file inside)", path=path)
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if not head:
            raise DataError("the file is empty: no records", path=path)
        if head.startswith("["):
            yield from _iter_json_array(f.read(), path)
            return
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line.rstrip("\r\n"))  # a column past the newline would read "column 1"
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", path=path, line=n)


def _iter_json_array(text: str, path: str) -> Iterator[tuple[int, object]]:
    """Yields (item number, object) of a JSON array text one item at a time."""
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, text.index("[") + 1).end()
    n = 0
    if text[pos : pos + 1] == "]":
        return
    while True:
        n += 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON array at item {n}: {e.msg} (line {e.lineno} column {e.colno}); "
                f"the {n - 1} items before it were read",
                path=path,
                line=n,
            ) from None
        yield n, obj
        pos = ws.match(text, pos).end()
        sep = text[pos : pos + 1]
        if sep == "]":
            return
        if sep != ",":
            raise DataError(
                f"malformed JSON array after item {n}: expected ',' or ']'"
                + (" (the file ends: truncated?)" if not sep else f", found {sep!r}")
                + f"; the {n} items before it were read",
                path=path,
                line=n + 1,
            )
        pos = ws.match(text, pos + 1).end()


def _need(obj, key, types=None):
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"missing field {key!r}")
    v = obj[key]
    if types is not None and not isinstance(v, types):
        raise DataError(f"field {key!r} has type {type(v).__name__}")
    return v


def _label(x, name="label") -> float | None:
    if x is None:
        return None
    if isinstance(x, bool):
        return float(x)
    if not isinstance(x, (int, float)):
        raise DataError(f"{name} must be a number or bool, got {x!r}")
    if not 0.0 <= float(x) <= 1.0:
        raise DataError(f"{name} out of range [0, 1]: {x!r}")
    return float(x)


def _ratings_to_labels(ratings, neutral: str, after_first_error: str) -> list[float | None]:
    """Returns labels for PRM800K ratings (None stays unlabelled) via prm_jax.targets, cached."""
    return list(_ratings_to_labels_cached(tuple(ratings), neutral, after_first_error))


@functools.lru_cache(maxsize=4096)
def _ratings_to_labels_cached(ratings: tuple, neutral: str, after_first_error: str) -> tuple:
    from prm_jax.targets import mask_after_first_error, rating_to_label  # numpy path, jax is installed

    for r in ratings:
        if r is not None and (isinstance(r, bool) or r not in (-1, 0, 1)):
            raise DataError(f"rating out of range {{-1, 0, 1}}: {r!r}")
    idx = [i for i, r in enumerate(ratings) if r is not None]
    labels: list[float | None] = [None] * len(ratings)
    if not idx:
        return tuple(labels)
    lab = rating_to_label([ratings[i] for i in idx], neutral)
    keep = mask_after_first_error(lab, None, after_first_error)
    for j, i in enumerate(idx):
        if keep[j]:
            labels[i] = float(lab[j])
    return tuple(labels)


def _prm800k_line(obj, n, *, neutral="positive", after_first_error="keep", **_) -> list[Record]:
    q = _need(obj, "question", dict)
    problem = _need(q, "problem", str)
    steps = _need(_need(obj, "label", dict), "steps", list)
    if not steps:
        raise DataError("empty step list")
    answer = q.get("ground_truth_answer")
    base = f"prm800k-{n}"
    path_steps, path_ratings, alts = [], [], []
    for k, st in enumerate(steps):
        comps = _need(st, "completions", (list, type(None))) or []  # null: the labeler gave up here
        chosen = st.get("chosen_completion")
        for j, c in enumerate(comps):
            if j != chosen:
                alts.append((k, j, _need(c, "text", str), _need(c, "rating")))
        if chosen is not None:
            if not 0 <= chosen < len(comps):
                raise DataError(f"chosen_completion {chosen} out of range at step {k}")
            path_steps.append(_need(comps[chosen], "text", str))
            path_ratings.append(_need(comps[chosen], "rating"))
        elif st.get("human_completion"):
            path_steps.append(_need(st["human_completion"], "text", str))
            path_ratings.append(st["human_completion"].get("rating"))
        else:
            break  # the trajectory ends here (e.g. found_error)
    meta = {
        "finish_reason": obj["label"].get("finish_reason"),
        "quality_control": bool(obj.get("is_quality_control_question")),
        "initial_screening": bool(obj.get("is_initial_screening_question")),
    }
    out = []
    if path_steps:
        out.append(
            Record(
                problem,
                path_steps,
                _ratings_to_labels(path_ratings, neutral, after_first_error),
                answer=answer,
                source="prm800k",
                id=base,
                meta=meta,
            )
        )
    # The chosen path's first error (under `neutral`): with after_first_error='drop', an alternative
    # step later than it continues a prefix that is already wrong, so it is left unlabelled like the
    # chosen path's own steps after the error.
    path_labels = _ratings_to_labels(path_ratings, neutral, "keep")
    first_err = next((i for i, x in enumerate(path_labels) if x is not None and x < 0.5), len(path_labels))
    for k, j, text, rating in alts:
        if rating is None:
            continue
        lab = _ratings_to_labels([rating], neutral, "keep")
        if after_first_error == "drop" and k > first_err:
            lab = [None]
        out.append(
            Record(
                problem,
                path_steps[:k] + [text],
                [None] * k + lab,
                answer=answer,
                source="prm800k",
                id=f"{base}-s{k}c{j}",
                meta={"alternative": True},
            )
        )
    if not out:
        raise DataError("no steps on the chosen path and no rated alternatives")
    return out


def _stepwise_row(obj) -> tuple[str, list[str], str, object, bool]:
    problem = _need(obj, "instruction", str)
    prefix = _need(obj, "responses", list)
    if not all(isinstance(s, str) for s in prefix):
        raise DataError("field 'responses' must be a list of strings")
    return (
        problem,
        prefix,
        _need(obj, "next_response", str),
        _need(obj, "rating"),
        bool(obj.get("is_preferred_response")),
    )


class _StepwiseGrouper:
    """Rebuilds trajectories from PRM800K step-wise rows (see module docstring)."""

    def __init__(self, neutral, after_first_error, group):
        self.neutral, self.afe, self.group = neutral, after_first_error, group
        self.chain = None  # (problem, steps, ratings, first line)

    def flush(self) -> list[Record]:
        if self.chain is None:
            return []
        problem, steps, ratings, n = self.chain
        self.chain = None
        return [
            Record(
                problem,
                steps,
                _ratings_to_labels(ratings, self.neutral, self.afe),
                source="prm800k_stepwise",
                id=f"prm800k_stepwise-{n}",
            )
        ]

    def row(self, obj, n) -> list[Record]:
        problem, prefix, step, rating, preferred = _stepwise_row(obj)
        lab = _ratings_to_labels([rating], self.neutral, "keep")
        c = self.chain
        if (
            self.afe == "drop"
            and c is not None
            and c[0] == problem
            and c[1][: len(prefix)] == prefix
            and any(x is not None and x < 0.5 for x in _ratings_to_labels(c[2][: len(prefix)], self.neutral, "keep"))
        ):
            lab = [None]  # the prefix holds an error already (see _prm800k_line)
        single = Record(
            problem,
            prefix + [step],
            [None] * len(prefix) + lab,
            source="prm800k_stepwise",
            id=f"prm800k_stepwise-{n}",
            meta={"alternative": not preferred},
        )
        if self.group == "row":
            return [single]
        out = []
        c = self.chain
        extends = c is not None and c[0] == problem and c[1] == prefix
        if preferred and not extends:
            out += self.flush()
            if not prefix:
                self.chain = (problem, [step], [rating], n)
                return out
            out.append(single)  # a preferred row whose chain we never saw: keep it alone
            return out
        if preferred:
            c[1].append(step)
            c[2].append(rating)
            return out
        if c is not None and c[0] != problem:
            out += self.flush()
        out.append(single)
        return out


def _math_shepherd_line(obj, n, **_) -> list[Record]:
    text, label = _need(obj, "input", str), _need(obj, "label", str)
    pieces = text.split(MS_TAG)
    if len(pieces) < 2:
        raise DataError(f"no {MS_TAG!r} step tags in 'input'")
    marks, pos = [], 0
    for k, piece in enumerate(pieces):
        if not label.startswith(piece, pos):
            raise DataError(f"'label' does not match 'input' before tag {k}")
        pos += len(piece)
        if k < len(pieces) - 1:
            if pos >= len(label) or label[pos] not in "+-":
                raise DataError(f"label at tag {k} is not '+' or '-'")
            marks.append(1.0 if label[pos] == "+" else 0.0)
            pos += 1
    if pos != len(label):
        raise DataError("'label' is longer than 'input'")
    if pieces[-1].strip():
        tail = pieces[-1].strip()
        raise DataError(f"text after the last {MS_TAG!r} tag is not a labelled step: {tail[:40]!r}")
    head = pieces[0]
    cut = head.find("Step 1:")
    if cut < 0:
        raise DataError("no 'Step 1:' separating the question from the steps")
    problem = head[:cut].strip()
    steps = [head[cut:].strip()] + [p.strip() for p in pieces[1:-1]]
    if any(not s for s in steps):
        raise DataError("empty step between tags")
    return [
        Record(problem, steps, marks, source="math_shepherd", id=f"math_shepherd-{n}", meta={"task": obj.get("task")})
    ]


def _processbench_line(obj, n, **_) -> list[Record]:
    steps = _need(obj, "steps", list)
    label = _need(obj, "label", int)
    if not steps:
        raise DataError("empty step list")
    if not -1 <= label < len(steps) or isinstance(label, bool):
        raise DataError(f"label out of range [-1, {len(steps) - 1}]: {label}")
    labels = [1.0] * len(steps) if label == -1 else [1.0] * label + [0.0] + [None] * (len(steps) - label - 1)
    fac = _need(obj, "final_answer_correct", bool)
    return [
        Record(
            _need(obj, "problem", str),
            steps,
            labels,
            outcome=float(fac),
            source="processbench",
            id=str(obj.get("id", f"processbench-{n}")),
            meta={"generator": obj.get("generator")},
        )
    ]


def _stepwise_jsonl_line(obj, n, *, label_field="labels", **_) -> list[Record]:
    # `steps` as outcome_jsonl names them: an outcome file whose records also carry step labels
    # (prm_jax.labeling.sample_outcomes' `exact_labels`) reads as step-wise data too
    steps = _need(obj, "completions" if "completions" in obj or "steps" not in obj else "steps", list)
    labels = _need(obj, label_field, list)
    q = obj.get("q")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return [
        Record(
            _need(obj, "prompt", str),
            steps,
            [_label(x, f"label {i}") for i, x in enumerate(labels)],
            outcome=_label(obj.get("correct"), "correct"),
            answer=_str_or_none(obj.get("answer")),
            source="stepwise_jsonl",
            id=str(obj.get("id", f"stepwise-{n}")),
            q_values=None if q is None else [_label(x, f"q {i}") for i, x in enumerate(q)],
            v0=_label(obj.get("v0"), "v0"),
            meta=meta,
        )
    ]


def _outcome_jsonl_line(obj, n, *, split="\n\n", **_) -> list[Record]:
    if "steps" in obj:
        steps = _need(obj, "steps", list)
    else:
        steps = [s.strip() for s in _need(obj, "response", str).split(split) if s.strip()]
    correct = _label(_need(obj, "correct"), "correct")
    return [
        Record(
            _need(obj, "prompt", str),
            steps,
            None,
            outcome=correct,
            answer=_str_or_none(obj.get("answer")),
            source="outcome_jsonl",
            id=str(obj.get("id", f"outcome-{n}")),
        )
    ]


def _gsm8k_line(obj, n, **_) -> list[Record]:
    sol = _need(obj, "answer", str)
    m = re.search(r"####\s*(.+?)\s*$", sol)
    if m is None:
        raise DataError("answer has no '#### N' line")
    steps = [s.strip() for s in sol[: m.start()].split("\n") if s.strip()]
    return [
        Record(
            _need(obj, "question", str),
            steps,
            None,
            answer=m.group(1).replace(",", ""),
            source="gsm8k",
            id=f"gsm8k-{n}",
        )
    ]


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Returns the stripped content of the last \\boxed{...} / \\fbox{...} in text (braces balanced,
    `\\boxed {` allowed), else of a brace-less `\\boxed 5`, else None. The MATH reader (training
    answers) and `evaluate.extract_answer` (graded answers) both use it, so the two cannot disagree."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        m = re.search(r"\\boxed ([^\s$]+)", text)
        return m.group(1) if m else None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def _math_line(obj, n, **_) -> list[Record]:
    sol = _need(obj, "solution", str)
    answer = obj.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        answer = last_boxed(sol)  # an `answer` of 0 is an answer (no `or` on a falsy value)
    elif not isinstance(answer, str):
        answer = str(answer)
    if answer is None:
        raise DataError("no 'answer' field and no \\boxed{} in the solution")
    steps = [s.strip() for s in sol.split("\n\n") if s.strip()]
    return [
        Record(
            _need(obj, "problem", str),
            steps,
            None,
            answer=answer,
            source="math",
            id=str(obj.get("unique_id", f"math-{n}")),
            meta={k: obj[k] for k in ("level", "subject", "type") if k in obj},
        )
    ]


def _str_or_none(x):
    return None if x is None else str(x)


LINE_PARSERS: dict[str, Callable] = {
    "prm800k": _prm800k_line,
    "math_shepherd": _math_shepherd_line,
    "processbench": _processbench_line,
    "stepwise_jsonl": _stepwise_jsonl_line,
    "outcome_jsonl": _outcome_jsonl_line,
    "gsm8k": _gsm8k_line,
    "math": _math_line,
}


def read(
    fmt: str,
    paths,
    *,
    skip_bad: bool = False,
    skipped: SkipCounter | None = None,
    neutral: str = "positive",
    after_first_error: str = "keep",
    group: str = "solution",
    split: str = "\n\n",
    label_field: str = "labels",
) -> Iterator[Record]:
    """Yields the validated records of one format from one path or a list of paths."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; known: {FORMATS}")
    if group not in ("solution", "row"):
        raise ValueError(f"group must be 'solution' or 'row', got {group!r}")
    skipped = skipped if skipped is not None else SkipCounter()
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        path = str(path)
        grouper = _StepwiseGrouper(neutral, after_first_error, group) if fmt == "prm800k_stepwise" else None
        items = iter_items(path)
        n = 0
        while True:
            try:
                n, obj = next(items)
                if grouper is not None:
                    recs = grouper.row(obj, n)
                else:
                    recs = LINE_PARSERS[fmt](
                        obj,
                        n,
                        neutral=neutral,
                        after_first_error=after_first_error,
                        split=split,
                        label_field=label_field,
                    )
                recs = [r.validate() for r in recs]
            except StopIteration:
                break
            except (DataError, KeyError, TypeError, AttributeError) as e:
                if isinstance(e, DataError):
                    err = e if e.path else DataError(e.reason, path=path, line=n)
                else:
                    err = DataError(f"bad record ({type(e).__name__}: {e})", path=path, line=n)
                if not skip_bad:
                    raise err from None
                skipped.add(err)
                if "malformed JSON array" in err.reason:
                    break  # a broken array file cannot be read on
                if "malformed JSON" in err.reason:
                    items = _iter_jsonl_from(path, err.line + 1)
                continue
            yield from recs
        if grouper is not None:
            yield from (r.validate() for r in grouper.flush())


def _iter_jsonl_from(path: str, first: int) -> Iterator[tuple[int, object]]:
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if n < first or not line.strip():
                continue
            try:
                yield n, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", path=path, line=n)


def read_all(fmt: str, paths, **kw) -> list[Record]:
    """Returns all records of `read(fmt, paths, **kw)` as a list."""
    return list(read(fmt, paths, **kw))
