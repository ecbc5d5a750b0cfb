"""`prm-jax search`: reward-guided search on problems with a local policy and verifier(s).

    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --method best_of_n --n 16 --agg min --arith 64
    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --pav-workdir runs/demo/pav --method pav_beam --n 16 --width 4 --alpha 0.5 --arith 64

    prm-jax search --policy-hf POLICY_DIR --verifier-hf PRM_DIR --head auto --problems math500.jsonl \
        --limit 100 --n 8 --per-problem picks.jsonl --table results.md

Problems: `--arith K` (K held-out arithmetic problems, graded exactly) or `--problems FILE` (MATH /
MATH500, GSM8K or `prompt` + `answer` rows, as .jsonl, .json, .parquet or .arrow; graded with
evaluate.grade_answer, `--answer-kind`). Prints one JSON object: accuracy with its bootstrap 95% CI
over problems, generated and verifier tokens per problem. `--per-problem` writes each problem's
samples and picks; `--table` appends a row to a results table (prm_jax.tables).
The comparison itself is `search.evaluate_methods`, the demo's and the search notebook's.
"""

from __future__ import annotations

import argparse
import os
import sys

METHODS = ("majority", "best_of_n", "weighted_vote", "beam", "pav_beam")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the options `search` and `evaluate best-of-n` share: policy, verifier, problems, sampling, outputs."""
    p.add_argument("--policy-workdir", help="training workdir of the policy (prm-jax train --workdir)")
    p.add_argument("--policy-hf", help="local Hugging Face folder of the policy (instead of --policy-workdir)")
    p.add_argument("--verifier-workdir", help="training workdir of the verifier")
    p.add_argument("--verifier-hf", help="local Hugging Face folder of the verifier (instead of --verifier-workdir)")
    p.add_argument(
        "--verifier-kind",
        default="score",
        choices=("score", "implicit"),
        help="score: a step-score head; implicit: beta * log pi / pi_ref against --ref-workdir",
    )
    p.add_argument(
        "--head",
        default="prm_jax",
        help="with --verifier-hf: how it scores a step, auto (from config.json) or one of "
        "prm_jax, token_classification, qwen_prm, math_shepherd, rlhflow, skywork (prm_jax.heads; a "
        "public family renders each solution as its authors do)",
    )
    p.add_argument("--ref-workdir", help="implicit PRM reference (default: the run's init.ref_workdir)")
    p.add_argument("--n", type=int, default=16, help="samples per problem (best-of-N) or beams")
    p.add_argument(
        "--agg",
        default="min",
        help="step-score aggregation: min, last, prod, mean or pure (PURE's min-form); an implicit verifier: min, last or mean",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per sampled solution")
    p.add_argument("--marker", help="step marker (default: <step> for the char tokenizer, else a blank line)")
    p.add_argument("--arith", type=int, help="evaluate on this many held-out arithmetic problems (graded exactly)")
    p.add_argument("--seed", type=int, default=2, help="seeds the problems (--arith), sampling and bootstrap")
    p.add_argument(
        "--problems",
        help="problems file (.jsonl, .json, .parquet, .arrow): MATH / MATH500 (`problem`, `solution` or "
        "`answer`), GSM8K (`question`, `answer` with '#### N'), or `prompt` + `answer` (`prm-jax data formats`)",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", "math", "gsm8k", "prompt"),
        help="--problems format; auto: told from the first row's fields",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N problems of --problems (or --arith)")
    p.add_argument(
        "--answer-kind",
        default=None,
        help="grading for --problems: math | gsm8k | arith (default: the format's, math for prompt files)",
    )
    p.add_argument("--per-problem", metavar="FILE.jsonl", help="write one JSON line per problem: samples, picks")
    p.add_argument(
        "--table",
        metavar="results.md",
        help="append the result rows to this table (markdown, with .csv and .tex beside it)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument(
        "--pav-workdir",
        help="PAV workdir (pav_beam: A^mu from the PAV, Q^pi from --verifier, "
        "which should be a verifier of the policy itself, e.g. trained on soft MC labels)",
    )
    p.add_argument("--method", default="best_of_n", choices=METHODS, help="the search method")
    p.add_argument("--width", type=int, default=4, help="beam width M: next steps per kept beam")
    p.add_argument("--alpha", type=float, default=0.5, help="PAV beam: rank by Q + alpha * A")
    p.add_argument("--max-steps", type=int, default=16, help="beam: step budget")
    p.add_argument("--out", help="also write the JSON result here")


def _problems(args):
    """Returns (problems, gold answers, grade(answer, gold), answer kind) of --arith or --problems; the
    kind also tells the policy how to read a sampled solution's answer."""
    from prm_jax import evaluate

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit}: give a positive number of problems")
    if args.arith and args.problems:
        raise ValueError("give one of --arith K and --problems FILE")
    if args.answer_kind is not None and args.answer_kind not in evaluate.ANSWER_KINDS:
        raise ValueError(f"--answer-kind {args.answer_kind!r}: give one of {', '.join(evaluate.ANSWER_KINDS)}")
    if args.arith:
        import numpy as np
        from prm_jax.data import arith

        rng = np.random.default_rng(args.seed)
        k = args.arith if args.limit is None else min(args.arith, args.limit)
        probs = [arith.sample_problem(arith.ArithConfig(), rng) for _ in range(k)]
        # integer equality: the char tokenizer's parser gives an int, another's the last integer as text
        grade = lambda a, g: evaluate.grade_answer(a, g, "arith")  # noqa: E731
        return [p.text for p in probs], [p.answer for p in probs], grade, "arith"
    if args.problems:
        fmt, rows = _read_problems(args.problems, args.format)
        if args.limit is not None:
            rows = rows[: args.limit]
        kind = args.answer_kind or {"gsm8k": "gsm8k"}.get(fmt, "math")
        return (
            [p for p, _ in rows],
            [a for _, a in rows],
            lambda a, g: a is not None and evaluate.grade_answer(a, g, kind),
            kind,
        )
    raise ValueError("give the problems: --arith K or --problems FILE")


def _read_problems(path: str, fmt: str) -> tuple[str, list[tuple[str, str]]]:
    """Returns (format, [(problem, gold answer)]) of a problems file (`--format auto`: by the first
        row's fields: `question` GSM8K, `problem` MATH, `prompt` a prompt + answer file), of any container
    `readers.iter_items` reads (.jsonl, .json, .parquet, .arrow, hub:ID:SPLIT)."""
    from prm_jax.data import readers

    if fmt == "auto":
        first = next(readers.iter_items(path), (1, {}))[1]
        if not isinstance(first, dict):
            raise ValueError(f"{path}:1: a row is a JSON object with fields, not {type(first).__name__}")
        keys = set(first)
        fmt = next(
            (f for k, f in (("prompt", "prompt"), ("question", "gsm8k"), ("problem", "math")) if k in keys), None
        )
        if fmt is None:
            raise ValueError(f"{path}:1: no `problem`, `question` or `prompt` field (found {sorted(keys)})")
    if fmt == "prompt":
        rows = []
        for i, r in readers.iter_items(path):
            if not isinstance(r, dict) or "prompt" not in r or "answer" not in r:
                raise ValueError(f"{path}:{i}: a prompt file's line needs `prompt` and `answer`")
            rows.append((r["prompt"], str(r["answer"])))
        return fmt, rows
    return fmt, [(r.problem, r.answer) for r in readers.read_all(fmt, path)]


# --method -> (the evaluate_methods curve it reads, the beam searches it needs)
CURVES = {
    "majority": ("majority", {}),
    "best_of_n": ("verifier/{agg}/argmax", {}),
    "weighted_vote": ("verifier/{agg}/weighted_vote", {}),
    "beam": ("beam", {"beam": {"rank": "verifier", "advantage": None, "answer": "verifier"}}),
    "pav_beam": ("pav_beam", {"pav_beam": {"rank": "verifier", "advantage": "pav", "answer": "verifier"}}),
}


def load(args: argparse.Namespace, *, need_verifier: bool, need_pav: bool = False):
    """Returns (policy, {name: Verifier}, problems, gold answers, grade) from the shared options."""
    from prm_jax import sampling
    from prm_jax.verifier import load_verifier

    if not (args.policy_workdir or args.policy_hf):
        raise ValueError("give the policy: --policy-workdir RUN or --policy-hf DIR")
    if need_verifier and not (args.verifier_workdir or args.verifier_hf):
        raise ValueError("give the verifier: --verifier-workdir RUN or --verifier-hf DIR")
    if need_pav and not args.pav_workdir:
        raise ValueError("--method pav_beam needs --pav-workdir (the PAV that gives A^mu)")
    problems, gold, grade, kind = _problems(args)
    pol = sampling.load_policy(args.policy_workdir, hf_dir=args.policy_hf, marker=args.marker, answer_kind=kind)
    verifiers = {}
    family = "prm_jax"
    if args.verifier_hf and args.verifier_kind == "score":
        from prm_jax import heads

        family = heads.detect_family(args.verifier_hf) if args.head == "auto" else args.head
    if need_verifier and family not in ("prm_jax", "token_classification"):
        from prm_jax import heads

        verifiers["verifier"] = heads.load_verifier(family, args.verifier_hf)
    elif need_verifier:
        verifiers["verifier"] = load_verifier(
            args.verifier_kind,
            workdir=args.verifier_workdir,
            hf_dir=args.verifier_hf,
            ref_workdir=args.ref_workdir,
            tokenizer=pol.tokenizer,
            marker=pol.marker,
        )
    if need_pav:
        verifiers["pav"] = load_verifier("score", workdir=args.pav_workdir, tokenizer=pol.tokenizer, marker=pol.marker)
    return pol, verifiers, problems, gold, grade


def write_per_problem(path: str, res: dict) -> None:
    """Writes res['per_problem'] as JSON lines (strict JSON: non-finite numbers as null)."""
    from prm_jax import jsonio

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in res["per_problem"]:
            f.write(jsonio.dumps(row) + "\n")
    print(f"wrote {path} ({len(res['per_problem'])} problems)", file=sys.stderr)


def source(args) -> dict:
    """Returns the table columns naming a result's policy, verifier and problems."""
    return {
        "policy": args.policy_workdir or args.policy_hf,
        "verifier": args.verifier_workdir or args.verifier_hf or "",
        "problems": args.problems or f"arith:{args.arith}",
    }


def run(args: argparse.Namespace) -> int:
    import jax

    from prm_jax import jsonio, search, tables

    if args.agg not in search.AGGS["score"]:
        raise ValueError(f"--agg {args.agg!r}: give one of {', '.join(search.AGGS['score'])}")
    pol, verifiers, problems, gold, same = load(
        args, need_verifier=args.method != "majority", need_pav=args.method == "pav_beam"
    )
    label, beams = CURVES[args.method]
    label = label.format(agg=args.agg)
    res = search.evaluate_methods(
        pol,
        verifiers,
        problems,
        gold,
        jax.random.PRNGKey(args.seed),
        n=args.n,
        beams=beams,
        beam_width=args.width,
        alpha=args.alpha,
        max_new_tokens=args.max_new_tokens,
        beam_max_steps=args.max_steps,
        temperature=args.temperature,
        top_p=args.top_p,
        grade=same,
        per_problem=bool(args.per_problem),
    )
    if label not in res["curves"]:
        raise ValueError(f"--agg {args.agg!r} is not an aggregation of a {args.verifier_kind} verifier")
    c, tok = res["curves"][label], res["tokens"]
    beam = label in beams
    out = {
        "method": args.method,
        "n": args.n,
        "problems": len(problems),
        "accuracy": c["acc"][-1],
        "ci95": [c["lo"][-1], c["hi"][-1]],
        "gen_tokens_per_problem": tok[f"{label}_gen_per_problem"]
        if beam
        else res["mean_gen_tokens_per_solution"] * args.n,
        "verifier_tokens_per_problem": tok[f"{label}_verifier_per_problem"]
        if beam
        else tok.get("verifier_verifier_per_problem", 0.0),
        "sampler_tokens_per_s": res["sampler_tokens_per_s"],
    }
    print(jsonio.dumps(out))
    if args.out:
        jsonio.dump(out, args.out)
    if args.per_problem:
        write_per_problem(args.per_problem, res)
    if args.table:
        row = {"task": "search", **source(args), "method": label, "n": args.n, "n_problems": len(problems)}
        row.update(
            {"accuracy %": 100 * out["accuracy"], "ci95 lo": 100 * out["ci95"][0], "ci95 hi": 100 * out["ci95"][1]}
        )
        row["gen_tokens_per_problem"] = out["gen_tokens_per_problem"]
        files = tables.append(args.table, row, key=("task", "policy", "verifier", "problems", "method", "n"))
        print(f"table: {files['md']} (+ .csv, .tex)", file=sys.stderr)
    return 0
