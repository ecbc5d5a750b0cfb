"""`prm-jax evaluate processbench`: ProcessBench F1 of a PRM from a local HF checkpoint.

    prm-jax evaluate processbench --checkpoint DIR --data gsm8k.json math.json ... [--head auto] \\
        [--threshold 0.5 | --pick-threshold-on gsm8k] [--marker '\\n\\n'] [--batch-size 8] [--max-len 2048]

Each --data file is one split (named by its file stem). `--head` says how the checkpoint reads a step
(`prm_jax.heads.FAMILIES`; `auto` tells it from config.json and the folder's tensors where it can): a
prm-jax or token-classification PRM gives sigmoid(score) at each closing marker; `qwen_prm`,
`math_shepherd`, `rlhflow`, `skywork` and `implicit` (with `--ref-checkpoint`; its step probability is
sigmoid(q_t)) render and read as their authors do. A solution's prediction is the first step under
the threshold, or -1. The
command prints per-split and average accuracy / F1 as a table and writes them, with every case's
prediction, to --output (JSON).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    p = sub.add_parser("processbench", help="ProcessBench: first-error accuracy and F1 per split")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a prm-jax training workdir (its latest checkpoint and tokenizer) or a local Hugging Face folder",
    )
    p.add_argument(
        "--head",
        default="auto",
        help="how the checkpoint scores a step: auto (from config.json) or one of "
        "prm_jax, token_classification, qwen_prm, math_shepherd, rlhflow, skywork, implicit (prm_jax.heads)",
    )
    p.add_argument("--ref-checkpoint", default=None, help="--head implicit: the reference model's HF folder")
    p.add_argument("--beta", type=float, default=None, help="--head implicit: beta (default EurusPRM's 0.001)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: --checkpoint)")
    p.add_argument("--data", required=True, nargs="+", help="ProcessBench split files (.json or .jsonl)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, help="step probability threshold (default 0.5)")
    g.add_argument(
        "--pick-threshold-on",
        default=None,
        metavar="SPLIT",
        help="choose the threshold with the best F1 on this split (a file stem) and reuse it",
    )
    p.add_argument(
        "--marker",
        default=None,
        help="step-end marker the PRM was trained with (default: the tokenizer's, a blank line)",
    )
    p.add_argument("--chat-template", default=None, help="'hf' or a string with {problem}; as in training")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-len", type=int, default=2048, help="tokens per solution; later steps are unscored")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="N cases of each split, a seeded subset stratified by erroneous / correct case (smoke runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    p.add_argument("--output", default="processbench.json", help="JSON file for metrics and predictions")


def _table(results: dict) -> str:
    w = max(8, *(len(k) for k in results)) + 2
    lines = [f"{'split':<{w}}{'n':>6}{'erroneous':>11}{'correct':>9}{'acc_err':>9}{'acc_ok':>9}{'F1':>8}"]
    for name, m in results.items():
        counts = f"{m['n_erroneous']:>11}{m['n_correct']:>9}" if name != "average" else f"{'':>20}"
        lines.append(
            f"{name:<{w}}{m['n']:>6}{counts}"
            f"{100 * m['acc_erroneous']:>9.1f}{100 * m['acc_correct']:>9.1f}{100 * m['f1']:>8.1f}"
        )
    return "\n".join(lines)


def _hf_verifier(args):
    """Returns (Verifier, family) of an HF folder read with --head."""
    from prm_jax import heads
    from prm_jax.data.tokenizers import HFTokenizer, default_marker

    family = heads.detect_family(args.checkpoint) if args.head == "auto" else args.head
    tokenizer = HFTokenizer(args.tokenizer or args.checkpoint)
    marker = args.marker or default_marker(tokenizer)
    own = family in ("prm_jax", "token_classification")  # rendered by prm-jax: marker and template apply
    if not own and (args.marker or args.chat_template or args.tokenizer):
        raise ValueError(
            f"--marker, --chat-template and --tokenizer do not apply to --head {family}: it renders as its authors do"
        )
    kw = dict(tokenizer=tokenizer, marker=marker, chat_template=args.chat_template) if own else {}
    if family == "implicit":
        kw.update(ref=args.ref_checkpoint, beta=args.beta)
    elif args.ref_checkpoint or args.beta is not None:
        raise ValueError(f"--ref-checkpoint and --beta are settings of --head implicit, not of --head {family}")
    ver = heads.load_verifier(family, args.checkpoint, max_batch=args.batch_size, max_len=args.max_len, **kw)
    return ver, family


def run(args) -> int:
    if args.task != "processbench":
        raise SystemExit(f"unknown evaluation task {args.task!r}")
    from prm_jax import evaluate, jsonio, processbench
    from prm_jax.data import readers
    from prm_jax.data.tokenizers import HFTokenizer

    names = [os.path.splitext(os.path.basename(p))[0] for p in args.data]
    if len(set(names)) != len(names):
        raise SystemExit(f"--data files must have distinct names (splits are named by file stem): {names}")
    if args.pick_threshold_on is not None and args.pick_threshold_on not in names:
        raise SystemExit(f"--pick-threshold-on {args.pick_threshold_on!r} is not one of the splits {names}")
    for path in args.data:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ProcessBench split not found: {path}")
    from prm_jax import loop

    if loop.is_run_dir(args.checkpoint):  # a prm-jax training workdir: its latest params and tokenizer
        if args.head not in ("auto", "prm_jax"):
            raise ValueError(f"{args.checkpoint} is a prm-jax training run: its head is prm_jax, not {args.head}")
        from prm_jax import verifier

        tok = HFTokenizer(args.tokenizer) if args.tokenizer else None
        ver = verifier.load_verifier(
            "score",
            workdir=args.checkpoint,
            tokenizer=tok,
            marker=args.marker,
            chat_template=args.chat_template,
            max_batch=args.batch_size,
            max_len=args.max_len,
        )
        family = "prm_jax"
    else:
        ver, family = _hf_verifier(args)
    print(f"[evaluate] {args.checkpoint}: head {family}", file=sys.stderr)

    splits = {}
    for name, path in zip(names, args.data):
        records = readers.read_all("processbench", path)
        if not records:
            raise SystemExit(f"{path}: no ProcessBench cases")
        subset = ""
        if args.limit is not None and args.limit < len(records):
            n_all = len(records)
            records = evaluate.processbench_subset(records, args.limit, args.seed)
            subset = f" (a seeded subset of {n_all}, stratified by erroneous / correct, seed {args.seed})"
        print(f"[evaluate] {name}: {len(records)} cases from {path}{subset}", file=sys.stderr)
        splits[name] = records
    out = processbench.run_processbench(
        ver,
        splits,
        batch_size=args.batch_size,
        threshold=args.threshold,
        pick_threshold_on=args.pick_threshold_on,
    )
    threshold, source, results = out["threshold"], out["threshold_source"], out["results"]
    truncated = {name: results[name]["truncated"] for name in names}
    print(f"threshold {threshold:.4f} ({source})")
    print(_table(results))
    if any(truncated.values()):
        print(f"note: cases with steps cut by --max-len {args.max_len}: {truncated}", file=sys.stderr)
    out = {
        "checkpoint": os.path.abspath(args.checkpoint),
        "threshold": threshold,
        "threshold_source": source,
        "head": family,
        "marker": ver.marker,
        "max_len": args.max_len,
        "limit": args.limit,
        "subset": None if args.limit is None else f"stratified by erroneous / correct, seed {args.seed}",
        "results": results,
        "predictions": out["predictions"],
    }
    jsonio.dump(out, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
