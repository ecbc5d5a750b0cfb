"""`prm-jax search`: reward-guided search on problems with a local policy and verifier(s).

    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --method best_of_n --n 16 --agg min --arith 64
    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --pav-workdir runs/demo/pav --method pav_beam --n 16 --width 4 --alpha 0.5 --arith 64

Problems: `--arith K` (K held-out arithmetic problems, graded exactly) or `--problems FILE.jsonl`
(`prompt` and `answer` per line; answers graded with evaluate.grade_answer, `--answer-kind`).
Prints one JSON object: accuracy (with its bootstrap 95% CI), generated and verifier tokens per problem.
The comparison itself is `search.evaluate_methods`, the demo's and the search notebook's.
"""

from __future__ import annotations

import argparse

METHODS = ("majority", "best_of_n", "weighted_vote", "beam", "pav_beam")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy-workdir", help="training workdir of the policy")
    p.add_argument("--policy-hf", help="local Hugging Face folder of the policy (instead)")
    p.add_argument("--verifier-workdir", help="training workdir of the verifier")
    p.add_argument("--verifier-hf", help="local Hugging Face folder of the verifier (instead)")
    p.add_argument("--verifier-kind", default="score", choices=("score", "implicit"))
    p.add_argument(
        "--head",
        default="prm_jax",
        help="with --verifier-hf: how it scores a step, auto (from config.json) or one of "
        "prm_jax, token_classification, qwen_prm, math_shepherd, rlhflow, skywork (prm_jax.heads; a "
        "public family renders each solution as its authors do)",
    )
    p.add_argument("--ref-workdir", help="implicit PRM reference (default: the run's init.ref_workdir)")
    p.add_argument(
        "--pav-workdir",
        help="PAV workdir (pav_beam: A^mu from the PAV, Q^pi from --verifier, "
        "which should be a verifier of the policy itself, e.g. trained on soft MC labels)",
    )
    p.add_argument("--method", default="best_of_n", choices=METHODS)
    p.add_argument("--n", type=int, default=16, help="samples (best-of-N) or beams")
    p.add_argument("--width", type=int, default=4, help="beam width M: next steps per kept beam")
    p.add_argument(
        "--agg", default="min", help="step-score aggregation: min last prod mean pure (PURE min-form) softmin"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="PAV beam: Q + alpha * A")
    p.add_argument("--max-steps", type=int, default=16, help="beam: step budget")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--marker", help="step marker (default: <step> for the char tokenizer, else blank line)")
    p.add_argument("--arith", type=int, help="evaluate on this many held-out arithmetic problems")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument(
        "--problems",
        help="problems file: MATH / MATH500 jsonl (`problem`, `solution` or `answer`), GSM8K jsonl "
        "(`question`, `answer` with '#### N'), or jsonl of `prompt` + `answer`",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", "math", "gsm8k", "prompt"),
        help="--problems format (default: told from the first line's fields)",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N problems of --problems")
    p.add_argument(
        "--answer-kind",
        default=None,
        help="grading for --problems: math | gsm8k | arith (default: the format's, math for prompt files)",
    )
    p.add_argument("--out", help="also write the JSON result here")


def _problems(args):
    if args.arith:
        import numpy as np
        from prm_jax.data import arith

        rng = np.random.default_rng(args.seed)
        probs = [arith.sample_problem(arith.ArithConfig(), rng) for _ in range(args.arith)]
        return [p.text for p in probs], [p.answer for p in probs], lambda a, g: a == g
    if args.problems:
        from prm_jax import evaluate

        fmt, rows = _read_problems(args.problems, args.format)
        if args.limit is not None:
            if args.limit < 1:
                raise ValueError(f"--limit {args.limit}: give a positive number of problems")
            rows = rows[: args.limit]
        kind = args.answer_kind or {"gsm8k": "gsm8k"}.get(fmt, "math")
        return (
            [p for p, _ in rows],
            [a for _, a in rows],
            lambda a, g: a is not None and evaluate.grade_answer(a, g, kind),
        )
    raise SystemExit("prm-jax search: give --arith K or --problems FILE")


def _read_problems(path: str, fmt: str) -> tuple[str, list[tuple[str, str]]]:
    """Returns (format, [(problem, gold answer)]) of a problems file (`--format auto`: by the first
    line's fields: `question` GSM8K, `problem` MATH, `prompt` a prompt + answer jsonl)."""
    import json

    from prm_jax.data import readers

    if not __import__("os").path.isfile(path):
        raise FileNotFoundError(f"--problems file not found: {path}")
    if fmt == "auto":
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        try:
            keys = set(json.loads(first)) if first else set()
        except ValueError:
            raise ValueError(f"{path}:1: not a JSON line") from None
        fmt = next(
            (f for k, f in (("prompt", "prompt"), ("question", "gsm8k"), ("problem", "math")) if k in keys), None
        )
        if fmt is None:
            raise ValueError(f"{path}:1: no `problem`, `question` or `prompt` field (found {sorted(keys)})")
    if fmt == "prompt":
        from prm_jax import labeling

        rows = []
        for i, r in enumerate(labeling.read_jsonl(path), 1):
            if "prompt" not in r or "answer" not in r:
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


def run(args: argparse.Namespace) -> int:
    import jax

    from prm_jax import jsonio, sampling, search
    from prm_jax.verifier import load_verifier

    if not (args.policy_workdir or args.policy_hf):
        raise SystemExit("prm-jax search: give --policy-workdir or --policy-hf")
    if args.method == "pav_beam" and not args.pav_workdir:
        raise SystemExit("prm-jax search: pav_beam needs --pav-workdir")
    pol = sampling.load_policy(
        args.policy_workdir, hf_dir=args.policy_hf, marker=args.marker, answer_kind=args.answer_kind
    )
    problems, gold, same = _problems(args)
    verifiers = {}
    family = "prm_jax"
    if args.verifier_hf and args.verifier_kind == "score":
        from prm_jax import heads

        family = heads.detect_family(args.verifier_hf) if args.head == "auto" else args.head
    if args.method != "majority" and family not in ("prm_jax", "token_classification"):
        from prm_jax import heads

        verifiers["verifier"] = heads.load_verifier(family, args.verifier_hf)
    elif args.method != "majority":
        verifiers["verifier"] = load_verifier(
            args.verifier_kind,
            workdir=args.verifier_workdir,
            hf_dir=args.verifier_hf,
            ref_workdir=args.ref_workdir,
            tokenizer=pol.tokenizer,
            marker=pol.marker,
        )
    if args.method == "pav_beam":
        verifiers["pav"] = load_verifier("score", workdir=args.pav_workdir, tokenizer=pol.tokenizer, marker=pol.marker)
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
    )
    if label not in res["curves"]:
        raise SystemExit(f"prm-jax search: aggregation {args.agg!r} is not one of {search.AGGS}")
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
    return 0
