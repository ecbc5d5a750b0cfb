"""`prm-jax evaluate processbench | best-of-n`: a PRM's ProcessBench F1, or best-of-N accuracy with it.

    prm-jax evaluate best-of-n --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --problems math500.jsonl --limit 64 --n 16 [--per-problem picks.jsonl] [--table results.md]

best-of-n samples --n solutions per problem once and reads every curve from that pool: majority vote,
the oracle (pass@N), the verifier's argmax and weighted vote, each at N = 1, 2, 4, ..., n with
bootstrap 95% CIs over problems (`search.evaluate_methods`, as the demo).

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
    p.add_argument("--batch-size", type=int, default=8, help="solutions scored per forward pass")
    p.add_argument("--max-len", type=int, default=2048, help="tokens per solution; later steps are unscored")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="N cases of each split, a seeded subset stratified by erroneous / correct case (smoke runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    p.add_argument("--output", default="processbench.json", help="JSON file for metrics and predictions")
    p.add_argument(
        "--table", metavar="results.md", help="append a row (F1 per split) to this table (.md, .csv and .tex)"
    )

    from prm_jax.commands import search

    b = sub.add_parser("best-of-n", help="best-of-N accuracy-vs-N curves with a policy and a verifier")
    search.add_model_arguments(b)
    b.add_argument("--output", default=None, help="JSON file for every curve (default: print only)")


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
    from prm_jax.data.tokenizers import HFTokenizer

    family = heads.detect_family(args.checkpoint) if args.head == "auto" else args.head
    tokenizer = HFTokenizer(args.tokenizer or args.checkpoint)
    marker = args.marker  # None: what the folder was exported with (its rendering file), else the default
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


def best_of_n(args) -> int:
    """`evaluate best-of-n`: prints the curves as a table; writes JSON, per-problem JSONL, table rows."""
    import jax

    from prm_jax import jsonio, search, tables
    from prm_jax.commands import search as search_cmd

    if args.agg not in search.AGGS["score"]:
        raise ValueError(f"--agg {args.agg!r}: give one of {', '.join(search.AGGS['score'])}")
    if args.n < 1 or args.n & (args.n - 1):
        raise ValueError(f"--n {args.n}: give a power of two (the curves are read at N = 1, 2, 4, ..., n)")
    pol, verifiers, problems, gold, grade = search_cmd.load(args, need_verifier=True)
    res = search.evaluate_methods(
        pol,
        verifiers,
        problems,
        gold,
        jax.random.PRNGKey(args.seed),
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        grade=grade,
        per_problem=bool(args.per_problem),
    )
    wanted = ["majority", "oracle", f"verifier/{args.agg}/argmax", f"verifier/{args.agg}/weighted_vote"]
    curves = {k: res["curves"][k] for k in wanted if k in res["curves"]}
    ns = res["curves"]["majority"]["ns"]
    w = max(len(k) for k in curves) + 2
    print(f"{len(problems)} problems, accuracy % [bootstrap 95% CI over problems] at N samples")
    print(f"{'method':<{w}}" + "".join(f"{'N=' + str(k):>20}" for k in ns))
    for k, c in curves.items():
        cells = [f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for a, lo, hi in zip(c["acc"], c["lo"], c["hi"])]
        print(f"{k:<{w}}" + "".join(f"{x:>20}" for x in cells))
    summary = {
        "problems": len(problems),
        "n": args.n,
        "policy_accuracy": res["policy_accuracy"],
        "curves": curves,
        "gen_tokens_per_problem_at_N": res["tokens"]["best_of_n_gen_per_problem_at_N"],
        "verifier_tokens_per_problem": res["tokens"].get("verifier_verifier_per_problem", 0.0),
        "sampler_tokens_per_s": res["sampler_tokens_per_s"],
        "seed": args.seed,
    }
    if args.output:
        jsonio.dump(summary, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.per_problem:
        search_cmd.write_per_problem(args.per_problem, res)
    if args.table:
        for k, c in curves.items():
            row = {"task": "best_of_n", **search_cmd.source(args), "method": k, "n": args.n}
            row["n_problems"] = len(problems)
            row.update({"accuracy %": 100 * c["acc"][-1], "ci95 lo": 100 * c["lo"][-1], "ci95 hi": 100 * c["hi"][-1]})
            row["gen_tokens_per_problem"] = summary["gen_tokens_per_problem_at_N"][str(args.n)]
            files = tables.append(args.table, row, key=("task", "policy", "verifier", "problems", "method", "n"))
        print(f"table: {files['md']} (+ .csv, .tex)", file=sys.stderr)
    return 0


def run(args) -> int:
    if args.task == "best-of-n":
        return best_of_n(args)
    from prm_jax import evaluate, jsonio, processbench, tables
    from prm_jax.data import readers
    from prm_jax.data.tokenizers import HFTokenizer

    names = [os.path.splitext(os.path.basename(p))[0] for p in args.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data files must have distinct names (splits are named by file stem): {names}")
    if args.pick_threshold_on is not None and args.pick_threshold_on not in names:
        raise ValueError(f"--pick-threshold-on {args.pick_threshold_on!r} is not one of the splits {names}")
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
            raise ValueError(f"{path}: no ProcessBench cases")
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
    if args.table:
        row = {"task": "processbench", "checkpoint": args.checkpoint, "head": family, "limit": args.limit or ""}
        row["threshold"] = threshold
        for name, m in results.items():
            row[f"{name} F1 %"] = 100 * m["f1"]
        files = tables.append(args.table, row, key=("task", "checkpoint", "head", "limit"))
        print(f"table: {files['md']} (+ .csv, .tex)", file=sys.stderr)
    return 0
