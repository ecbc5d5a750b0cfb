"""`prm-jax data formats|stats|prepare`: the formats' fields, a data file's statistics as one JSON object, or
TFDS array_record preparation.

    prm-jax data formats
    prm-jax data stats --format math --path math500.jsonl
    prm-jax data stats --format prm800k_stepwise --path phase1_train.parquet
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

FORMATS_HELP = (
    "prm800k, prm800k_stepwise, math_shepherd, processbench, stepwise_jsonl, outcome_jsonl, gsm8k, math, arith"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("formats", help="each format's fields and an example row; the file containers read")
    for name, help_ in (
        ("stats", "print one JSON object of dataset statistics"),
        ("prepare", "build a TFDS array_record dataset from files"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--format", required=True, help=FORMATS_HELP)
        p.add_argument(
            "--path",
            action="append",
            default=[],
            help="data file: .jsonl, .json, .parquet, .arrow or hub:ID[:CONFIG]:SPLIT (repeatable); for "
            "prepare, NAME=PATH puts the file in split NAME",
        )
        p.add_argument("--skip-bad", action="store_true", help="skip and count malformed records")
        p.add_argument(
            "--neutral",
            default="positive",
            choices=("positive", "negative"),
            help="PRM800K rating 0 counts as (default positive)",
        )
        p.add_argument(
            "--after-first-error",
            default="keep",
            choices=("keep", "drop"),
            help="labels after the first error: keep, or drop (unlabelled)",
        )
        p.add_argument(
            "--group",
            default="solution",
            choices=("solution", "row"),
            help="PRM800K step-wise rows: rebuild solutions, or one record per row",
        )
        p.add_argument("--label-field", default="labels", help="stepwise_jsonl: field holding the step labels")
        p.add_argument("--count", type=int, default=10000, help="arith: number of records")
        p.add_argument("--seed", type=int, default=0, help="arith: stream seed")
        if name == "stats":
            p.add_argument("--tokenizer", default=None, help="HF tokenizer folder (default: the char tokenizer)")
            p.add_argument(
                "--marker",
                default=None,
                help="step-end marker (default: a blank line; for --format arith the tokenizer's, '<step>' for char)",
            )
            p.add_argument("--chat-template", default=None, help="'hf' or a template with {problem}")
            p.add_argument("--progress", action="store_true", help="progress bar on stderr")
        else:
            p.add_argument("--out", required=True, help="output data_dir")
            p.add_argument("--split", default="train", help="split name for these files")


def _records(args, skipped):
    from prm_jax.data import arith, readers

    if args.format == "arith":
        return (arith.make_record(arith.ArithConfig(), args.seed, i) for i in range(args.count))
    if not args.path:
        raise ValueError(f"--path is required for format {args.format}")
    return readers.read(
        args.format,
        args.path,
        skip_bad=args.skip_bad,
        skipped=skipped,
        neutral=args.neutral,
        after_first_error=args.after_first_error,
        group=args.group,
        label_field=args.label_field,
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "formats":
        from prm_jax.data import formats

        print(formats.describe())
        return 0
    return _stats(args) if args.action == "stats" else _prepare(args)


def _stats(args) -> int:
    from prm_jax.data.records import SkipCounter
    from prm_jax.data.stats import record_stats
    from prm_jax.data.tokenizers import default_marker, make_tokenizer

    tok = make_tokenizer(args.tokenizer)
    # The arith task renders with the tokenizer's own marker; data files are measured as they are
    # written, steps closed by a blank line.
    marker = args.marker or (default_marker(tok) if args.format == "arith" else "\n\n")
    skipped = SkipCounter()
    out = {"format": args.format, "paths": args.path}
    if args.format == "arith":
        out.update(seed=args.seed, count=args.count)
    elif args.format.startswith("prm800k"):
        out.update(neutral=args.neutral, after_first_error=args.after_first_error, group=args.group)
    out.update(
        record_stats(
            _records(args, skipped), tok, marker=marker, chat_template=args.chat_template, progress=args.progress
        )
    )
    out["tokenizer"] = (
        args.tokenizer
        if args.tokenizer
        else "char (built-in CharTokenizer: no --tokenizer given; lengths are in characters + bos)"
    )
    out["marker"] = marker
    if hasattr(tok, "unknown_share"):  # the char tokenizer: how much of the text it could not see
        out["unknown_chars"] = tok.unknown_seen
        out["unknown_char_share"] = round(tok.unknown_share, 4)
    if args.format == "arith":
        out["step_error_rate"] = round(out["negative_steps"] / max(out["steps"], 1), 4)
        out["solutions_with_error_rate"] = round(out["examples_with_error"] / max(out["examples"], 1), 4)
    out["skipped"] = skipped.as_dict()
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _prepare(args) -> int:
    from prm_jax.data import tfds_builders

    if args.format == "arith":
        splits = {args.split: (args.seed, args.count)}
    elif not args.path:
        raise ValueError(f"--path is required for format {args.format}")
    else:
        splits = {}
        for p in args.path:  # "NAME=PATH" puts PATH in split NAME, else --split
            name, sep, rest = p.partition("=")
            if sep and name.isidentifier() and not os.path.exists(p):
                splits.setdefault(name, []).append(rest)
            else:
                splits.setdefault(args.split, []).append(p)
    kw = (
        {}
        if args.format == "arith"
        else dict(
            neutral=args.neutral,
            after_first_error=args.after_first_error,
            group=args.group,
            label_field=args.label_field,
        )
    )
    with contextlib.redirect_stdout(sys.stderr):  # tfds prints progress; stdout keeps one JSON object
        info = tfds_builders.prepare(args.format, splits, args.out, skip_bad=args.skip_bad, **kw)
    print(json.dumps(info, ensure_ascii=False))
    return 0
