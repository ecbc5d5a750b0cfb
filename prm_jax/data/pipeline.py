"""The training loader: sources of Records -> shuffled, repeated, host-sharded batches with a savable state.

Sources are random access (`len(src)`, `src[i] -> Record`): an in-memory list (files read by
`readers`), a prepared TFDS array_record split (`tfds_builders.RecordSource`), or the unbounded
arithmetic stream (`ArithSource`, no len). The index order is computed here with numpy, not grain:
the GPU machine has no grain, and a checkpoint must resume identically with or without it.

Order: epoch e visits `rng([seed, e]).permutation(N)` (identity with shuffle=False); host p of P
takes every P-th entry of it, starting at p. The unbounded arith stream gives host p the records
p, p + P, p + 2P, ... The iterator state is `{"epoch", "pos", ...}`: the next record not yet put into
an emitted batch, so restoring it resumes at the same record (packing re-reads a held-over example).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Iterator

import numpy as np

from prm_jax.config import complete_section
from prm_jax.data import arith, readers, tokenize
from prm_jax.data.records import DataError, Record, SkipCounter
from prm_jax.data.tokenizers import make_tokenizer  # noqa: F401  (re-exported for the trainer)

STATE_VERSION = 1
ARITH_MISSES = 10_000  # records of the unbounded stream that may fail to fit in a row before it is an error
TOKEN_FIELDS = (
    "tokens",
    "segment_ids",
    "positions",
    "step_ids",
    "response_mask",
    "step_pos",
    "step_labels",
    "step_mask",
    "step_segment",
    "outcome",
    "outcome_mask",
)


class ListSource:
    """Random access over an in-memory list of Records; `name` (the files) appears in messages."""

    def __init__(self, records: list[Record], name: str = "the records given"):
        if not records:
            raise DataError(f"data source is empty: no records in {name}")
        self.records, self.name = records, name

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]


ROLES = ("train", "eval")


def in_eval_split(problem: str, eval_frac: float) -> bool:
    """Returns whether `problem` belongs to the held-out evaluation split (a stable hash of its text)."""
    h = int.from_bytes(hashlib.sha1(problem.encode("utf-8")).digest()[:4], "big")
    return h / 2**32 < eval_frac


def split_description(data_cfg) -> str:
    """Returns a one-line description of the evaluation split `data_cfg` defines."""
    data_cfg = complete_section("data", data_cfg)
    if data_cfg.eval_path:
        return f"held-out file {data_cfg.eval_path}"
    frac = float(data_cfg.eval_frac)
    if frac > 0:
        return f"{frac:.0%} of problems held out by a hash of their text (never trained on)"
    return "none"


class ArithSource:
    """The unbounded seeded arithmetic stream as a random-access source (no len).

    With `eval_frac` > 0 the stream is split by problem: role 'train' yields None for the held-out
    problems and role 'eval' for the others (the iterator skips and counts them).
    """

    def __init__(self, cfg: arith.ArithConfig, seed: int, eval_frac: float = 0.0, role: str = "train"):
        self.cfg, self.seed, self.eval_frac, self.role = cfg, int(seed), float(eval_frac), role

    def _keep(self, problem: str) -> bool:
        return self.eval_frac <= 0 or in_eval_split(problem, self.eval_frac) == (self.role == "eval")

    def __getitem__(self, i: int) -> Record | None:
        r = arith.make_record(self.cfg, self.seed, i)
        return r if self._keep(r.problem) else None


class PairSource:
    """DPO pairs (chosen, rejected) for the same problem: correct vs incorrect outcome."""

    def __init__(self, records: list[Record], name: str = "the records given"):
        self.name = name
        by_problem: dict[str, tuple[list, list]] = {}
        for r in records:
            if r.outcome is None:
                raise ValueError(f"pairing needs outcome labels; record {r.id!r} has none")
            by_problem.setdefault(r.problem, ([], []))[0 if r.outcome >= 0.5 else 1].append(r)
        self.pairs = [(c, w) for good, bad in by_problem.values() for c, w in zip(good, bad)]
        if not self.pairs:
            raise ValueError("no problem has both a correct and an incorrect solution to pair")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        return self.pairs[i]


class ArithPairSource(ArithSource):
    """Arith DPO pairs: the gold solution and a corrupted one of the same problem."""

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, int(i), 2])
        p = arith.sample_problem(self.cfg, rng)
        kinds = self.cfg.corruption_kinds or arith.KINDS
        bad, _ = arith.solve(
            p, rng, corrupt_at=int(rng.integers(len(p.formulas))), kind=kinds[int(rng.integers(len(kinds)))]
        )
        if not self._keep(p.text):
            return None
        base = f"arith-pair-{self.seed}-{i}"
        return _arith_record(p, arith.solve(p)[0], base + "-c"), _arith_record(p, bad, base + "-r")


def _arith_record(p, steps, rid):
    return Record(
        p.text,
        steps,
        [float(x) for x in arith.check_steps(p, steps)],
        outcome=float(arith.is_correct(p, steps)),
        answer=str(p.answer),
        source="arith",
        id=rid,
    )


def build_source(data_cfg, seed: int = 0, *, skipped: SkipCounter | None = None, role: str = "train"):
    """Returns a random-access source for `data_cfg` (records, or pairs if `pair` is set).

    role 'train' reads the training records; role 'eval' the held-out split: `eval_path` (a file of
    the same format) or the `eval_frac` share of problems (by a hash of the problem text, which the
    training role then leaves out). An evaluation without either is an error: it would read the
    training records.
    """
    if role not in ROLES:
        raise ValueError(f"unknown data role {role!r}; expected one of {ROLES}")
    data_cfg = complete_section("data", data_cfg)
    src = data_cfg.source
    pair = bool(data_cfg.pair)
    fmt = data_cfg.format
    if fmt is not None and src != "tfds" and fmt != src:
        raise ValueError(
            f"data.format={fmt!r} is read only for source='tfds'; a file's format is data.source "
            f"(here {src!r}): set --config.data.source={fmt}"
        )
    eval_path, eval_frac = data_cfg.eval_path, float(data_cfg.eval_frac)
    if not 0.0 <= eval_frac < 1.0:
        raise ValueError(f"data.eval_frac must be in [0, 1), got {eval_frac}")
    if role == "eval" and not eval_path and eval_frac == 0:
        raise ValueError(
            "evaluation needs a held-out split: set data.eval_path (a file) or data.eval_frac "
            "(a share of problems held out by hash); without one it would read the training records"
        )
    if src == "arith":
        if eval_path:
            raise ValueError("the arith source is split by data.eval_frac, not data.eval_path")
        cfg = arith.ArithConfig.from_dict(data_cfg.arith)
        cls = ArithPairSource if pair else ArithSource
        return cls(cfg, seed, eval_frac, role)
    if src == "tfds":
        from prm_jax.data import tfds_builders

        rs = tfds_builders.data_source(data_cfg.path, data_cfg.format, data_cfg.split)
        if pair:
            return PairSource([rs[i] for i in range(len(rs))], str(data_cfg.path))
        return rs
    paths = data_cfg.paths or data_cfg.path
    if role == "eval" and eval_path:
        paths = eval_path
    if not paths:
        raise ValueError(f"data source {src!r} needs `path` or `paths`")
    print(f"[data] reading {src} records ({role}) from {paths}", file=sys.stderr, flush=True)
    records = readers.read_all(
        src,
        paths,
        skip_bad=bool(data_cfg.skip_bad),
        skipped=skipped,
        neutral=data_cfg.neutral,
        after_first_error=data_cfg.after_first_error,
        group=data_cfg.group,
        split=data_cfg.split_on,
        label_field=(data_cfg.eval_label_field if role == "eval" else None) or data_cfg.label_field,
    )
    if not eval_path and eval_frac > 0:
        records = [r for r in records if in_eval_split(r.problem, eval_frac) == (role == "eval")]
        if not records:
            raise ValueError(f"data.eval_frac={eval_frac} leaves no {role} records in {paths}")
    name = ", ".join(str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths))
    return PairSource(records, name) if pair else ListSource(records, name)


# Targets no mask can mark unknown: a record without them would train on zeros.
EVERY_RECORD = ("q_values",)


def check_targets(source, field: str | None, objective: str, scan: int = 100_000) -> None:
    """Raises DataError when no record of a finite source has `field` (the objective's target), so a
    run never trains on nothing (e.g. BCE on GSM8K, which has no step labels), or, for a field of
    EVERY_RECORD, when some records have it and others do not."""
    if field is None or not hasattr(source, "__len__") or isinstance(source, PairSource):
        return
    n = min(len(source), scan)
    has = [getattr(source[i], field) is not None for i in range(n)] if field in EVERY_RECORD else []
    if any(has) and not all(has):
        # A missing PAV target would become a zero target in its batch (no mask marks it unknown).
        first, gap = has.index(True), has.index(False)
        raise DataError(
            f"objective {objective!r} trains on the records' {field!r}: record {source[first].id!r} of "
            f"{getattr(source, 'name', 'the data')} has them but record {source[gap].id!r} has none; "
            "give every record its own"
        )
    for i in range(n):
        v = getattr(source[i], field)
        if v is not None and (not isinstance(v, list) or any(x is not None for x in v)):
            return
    raise DataError(
        f"objective {objective!r} trains on the records' {field!r}, but none of the "
        f"{min(len(source), scan)} records of {getattr(source, 'name', 'the data')} has one"
    )


@dataclasses.dataclass
class Encoding:
    """How records become examples (see tokenize.encode_example)."""

    marker: str
    seq_len: int
    max_steps: int
    chat_template: str | None = None
    add_bos: bool | None = None
    add_eos: bool = False


class TrainIterator:
    """Yields batch dicts of numpy arrays; `get_state()` / `set_state()` save and restore the position."""

    def __init__(
        self,
        source,
        tokenizer,
        enc: Encoding,
        *,
        batch_size: int,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        shuffle: bool = True,
        repeat: bool = True,
        pack: bool = False,
        pairs: bool = False,
        skipped: SkipCounter | None = None,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        if pack and pairs:
            raise ValueError("packing is off for DPO pairs (outcome is per row)")
        self.source, self.tok, self.enc = source, tokenizer, enc
        self.batch_size, self.seed, self.shuffle, self.repeat = batch_size, int(seed), shuffle, repeat
        self.pi, self.pc, self.pack, self.pairs = process_index, process_count, pack, pairs
        self.n = len(source) if hasattr(source, "__len__") else None
        if self.n is not None and self.n < process_count:
            raise ValueError(f"{self.n} records cannot be sharded over {process_count} processes")
        self.epoch, self.pos = 0, 0
        # examples placed in batches, records skipped as too long, trailing steps truncated away
        self.counts = {
            "examples": 0,
            "too_long": 0,
            "dropped_steps": 0,
            "held_out": 0,
            "outcome_masked": 0,
            "whitespace_only_steps": 0,
        }
        self.skipped = skipped if skipped is not None else SkipCounter()
        self._perm_epoch, self._perm = None, None
        self._long_ids: set = set()  # ids of the records counted as too long
        self._peeked = None  # (example, cursor before it): read but not yet placed (packing)

    # --- order -------------------------------------------------------------------------------
    def _share(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
            self._perm, self._perm_epoch = order[self.pi :: self.pc], epoch
        return self._perm

    def _next_index(self):
        """Returns the source index at the cursor and advances it; None at the end (repeat=False)."""
        if self.n is None:
            i = self.pos * self.pc + self.pi
            self.pos += 1
            return i
        share = self._share(self.epoch)
        if self.pos >= len(share):
            if not self.repeat:
                return None
            self.epoch, self.pos = self.epoch + 1, 0
            share = self._share(self.epoch)
        i = int(share[self.pos])
        self.pos += 1
        return i

    # --- examples ----------------------------------------------------------------------------
    def _encode(self, rec: Record):
        e = self.enc
        try:
            ex = tokenize.encode_example(
                rec,
                self.tok,
                marker=e.marker,
                max_len=e.seq_len,
                max_steps=e.max_steps,
                chat_template=e.chat_template,
                add_bos=e.add_bos,
                add_eos=e.add_eos,
            )
        except tokenize.ExampleTooLong:
            self._too_long(rec)
            return None
        if rec.steps and len(ex["step_pos"]) == 0:
            self._too_long(rec)  # not even the first step fits
            return None
        # kept (the step is its marker alone) but counted: such steps are usually a splitting artifact
        self.counts["whitespace_only_steps"] += sum(1 for st in rec.steps[: len(ex["step_pos"])] if not st.strip())
        return ex

    def _too_long(self, rec: Record) -> None:
        """Counts a record that does not fit, once however many epochs meet it."""
        key = rec.id or f"{rec.problem}\x00{rec.steps}"  # records built in code may have no id
        if key not in self._long_ids:
            self._long_ids.add(key)
            self.counts["too_long"] += 1

    def _next_example(self):
        """Returns the next encodable example (or pair) and the cursor before it; None at the end.

        A whole pass over a finite source (ARITH_MISSES records of the unbounded stream) without one
        that fits is an error at once, naming the source and the longest record seen.
        """
        limit = self.n if self.n is not None else ARITH_MISSES
        misses, longest = 0, (0, "")
        while True:
            before = (self.epoch, self.pos)
            i = self._next_index()
            if i is None:
                return None, before
            item = self.source[i]
            if item is None:  # a problem of the other split (train / eval)
                self.counts["held_out"] += 1
            elif self.pairs:
                exs = [self._encode(r) for r in item]
                if all(x is not None for x in exs):
                    return tuple(exs), before
            else:
                ex = self._encode(item)
                if ex is not None:
                    return ex, before
            if item is not None:
                misses += 1
                for r in item if self.pairs else (item,):
                    size = len(r.problem) + sum(len(x) for x in r.steps)
                    if size > longest[0]:
                        longest = (size, r.id)
            if misses >= limit:
                e = self.enc
                raise DataError(
                    f"no record of {getattr(self.source, 'name', 'the arith stream')} fits "
                    f"seq_len={e.seq_len} / max_steps={e.max_steps} ({misses} tried; the longest "
                    f"seen, {longest[1]!r}, has {longest[0]} characters): raise the limits"
                )

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        e, pad = self.enc, self.tok.pad_id
        if self.pack:
            return self._next_packed()
        exs = []
        while len(exs) < self.batch_size:
            ex, _ = self._next_example()
            if ex is None:
                break
            exs.append(ex)
        if not exs:
            raise StopIteration
        self._count(exs)
        rows = self.batch_size  # a short last batch (repeat=False) keeps its shape: empty rows
        if not self.pairs:
            return tokenize.pad_batch(exs, e.seq_len, e.max_steps, pad, num_rows=rows)
        chosen = tokenize.pad_batch([c for c, _ in exs], e.seq_len, e.max_steps, pad, num_rows=rows)
        rejected = tokenize.pad_batch([r for _, r in exs], e.seq_len, e.max_steps, pad, num_rows=rows)
        chosen.update({"rejected_" + k: v for k, v in rejected.items() if k in TOKEN_FIELDS or k == "q_targets"})
        return chosen

    def _next_packed(self) -> dict:
        e = self.enc
        exs, rows, used_t, used_s = [], 0, 0, 0
        while True:
            if self._peeked is not None:
                ex, before = self._peeked
                self._peeked = None
            else:
                ex, before = self._next_example()
            if ex is None:
                break
            n, s = len(ex["tokens"]), len(ex["step_pos"])
            if rows == 0 or used_t + n > e.seq_len or used_s + s > e.max_steps:
                if rows == self.batch_size:
                    self._peeked = (ex, before)  # the cursor is already past it; state rewinds (get_state)
                    break
                rows, used_t, used_s = rows + 1, 0, 0
            exs.append(ex)
            used_t, used_s = used_t + n, used_s + s
        if not exs:
            raise StopIteration
        self._count(exs)
        return tokenize.pack(exs, e.seq_len, e.max_steps, self.tok.pad_id, num_rows=self.batch_size)

    def _count(self, exs) -> None:
        self.counts["examples"] += len(exs)
        flat = [x for ex in exs for x in (ex if isinstance(ex, tuple) else (ex,))]
        self.counts["dropped_steps"] += sum(int(x["dropped_steps"]) for x in flat)
        # examples whose outcome losses mask them (unknown outcome, or steps truncated away)
        self.counts["outcome_masked"] += sum(int(not x["outcome_mask"]) for x in flat)

    # --- state -------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Returns a small JSON-able dict: the next record to read and the checks for restoring."""
        epoch, pos = self._peeked[1] if self._peeked is not None else (self.epoch, self.pos)
        return {
            "version": STATE_VERSION,
            "epoch": int(epoch),
            "pos": int(pos),
            "seed": self.seed,
            "process_index": self.pi,
            "process_count": self.pc,
            "source_len": self.n,
            "counts": dict(self.counts),
            "too_long_ids": sorted(self._long_ids),
        }

    def set_state(self, state: dict) -> None:
        """Restores a state from get_state(); raises ValueError if it belongs to another setup."""
        for key, mine in (
            ("version", STATE_VERSION),
            ("seed", self.seed),
            ("process_index", self.pi),
            ("process_count", self.pc),
            ("source_len", self.n),
        ):
            if state.get(key) != mine:
                what = {"source_len": "training records", "process_count": "processes"}.get(key, key)
                raise ValueError(f"{what}: saved {state.get(key)!r}, now {mine!r}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.counts = {**{k: 0 for k in self.counts}, **state.get("counts", {})}
        self._long_ids = set(state.get("too_long_ids", []))
        self._peeked = None


def make_train_iterator(
    data_cfg,
    tokenizer,
    *,
    batch_size: int,
    seq_len: int,
    max_steps: int,
    seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    role: str = "train",
) -> TrainIterator:
    """Returns the training iterator for `data_cfg` (ConfigDict or dict; keys in the module README).

    Keys: source ('arith' | readers.FORMATS | 'tfds'), path / paths (tfds: path = prepare's out_dir,
    plus format and split), marker (default: '<step>' for the char tokenizer), chat_template, pack,
    skip_bad, neutral, after_first_error, group, label_field, eval_label_field, split_on, shuffle, repeat, add_eos,
    add_bos, pair, arith (ArithConfig fields), eval_path / eval_frac (the held-out split that
    role='eval' reads; see build_source).
    """
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    data_cfg = complete_section("data", data_cfg)
    marker = data_cfg.marker
    if marker is None:
        if not isinstance(tokenizer, arith.CharTokenizer):
            raise ValueError("data config needs `marker` (e.g. '\\n\\n', 'ки', '<extra_0>') for this tokenizer")
        from prm_jax.data.tokenizers import default_marker

        marker = default_marker(tokenizer)
    skipped = SkipCounter()
    source = build_source(data_cfg, seed, skipped=skipped, role=role)
    enc = Encoding(
        marker=marker,
        seq_len=seq_len,
        max_steps=max_steps,
        chat_template=data_cfg.chat_template,
        add_bos=data_cfg.add_bos,
        add_eos=bool(data_cfg.add_eos),
    )
    return TrainIterator(
        source,
        tokenizer,
        enc,
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        shuffle=bool(data_cfg.shuffle),
        repeat=bool(data_cfg.repeat),
        pack=bool(data_cfg.pack),
        pairs=bool(data_cfg.pair),
        skipped=skipped,
    )
