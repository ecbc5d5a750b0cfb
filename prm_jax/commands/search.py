"""`prm-jax search`: reward-guided search on problems with a local policy and verifier(s).

    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --method best_of_n --n 16 --agg min --arith 64
    prm-jax search --policy-workdir runs/demo/policy --verifier-workdir runs/demo/bce \
        --pav-workdir runs/demo/pav --method pav_beam --n 16 --width 4 --alpha 0.5 --arith 64

Problems: `--arith K` (K held-out arithmetic problems, graded exactly) or `--problems FILE.jsonl`
(`prompt` and `answer` per line; answers graded with evaluate.grade_answer, `--answer-kind`).
Prints one JSON object: accuracy, generated and verifier tokens per problem.
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
    p.add_argument("--problems", help="jsonl with prompt and answer")
    p.add_argument("--answer-kind", default="math", help="grading for --problems: math | gsm8k | arith")
    p.add_argument("--out", help="also write the JSON result here")


def _policy(args):
    from prm_jax import sampling
    from prm_jax.data.arith import final_answer

    if args.policy_workdir:
        from prm_jax import loop
        from prm_jax.data.arith import CharTokenizer

        cfg, params, _ = loop.load_trained(args.policy_workdir)
        tok, answer_fn = CharTokenizer(), final_answer
    elif args.policy_hf:
        from prm_jax import evaluate, hf
        from prm_jax.data.tokenizers import HFTokenizer

        cfg, params = hf.load_checkpoint(args.policy_hf)
        tok = HFTokenizer(args.policy_hf)
        answer_fn = lambda steps: evaluate.extract_answer("\n\n".join(steps), args.answer_kind)  # noqa: E731
    else:
        raise SystemExit("prm-jax search: give --policy-workdir or --policy-hf")
    from prm_jax.data.tokenizers import default_marker

    marker = args.marker or default_marker(tok)
    step_ids = tok.marker_ids(marker)
    smp = sampling.Sampler(
        cfg, params, pad_id=tok.pad_id, eos_id=tok.eos_id, step_id=step_ids[0] if len(step_ids) == 1 else None
    )
    return sampling.Policy(smp, tok, marker=marker, answer_fn=answer_fn), tok, marker


def _problems(args):
    if args.arith:
        import numpy as np
        from prm_jax.data import arith

        rng = np.random.default_rng(args.seed)
        probs = [arith.sample_problem(arith.ArithConfig(), rng) for _ in range(args.arith)]
        return [p.text for p in probs], [p.answer for p in probs], lambda a, g: a == g
    if args.problems:
        from prm_jax import evaluate, labeling

        rows = labeling.read_jsonl(args.problems)
        return (
            [r["prompt"] for r in rows],
            [r["answer"] for r in rows],
            lambda a, g: a is not None and evaluate.grade_answer(a, g, args.answer_kind),
        )
    raise SystemExit("prm-jax search: give --arith K or --problems FILE")


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from prm_jax import jsonio, search
    from prm_jax.verifier import load_verifier

    pol, tok, marker = _policy(args)
    problems, gold, same = _problems(args)
    rng = jax.random.PRNGKey(args.seed)
    ver = None
    if args.method != "majority":
        ver = load_verifier(
            args.verifier_kind,
            workdir=args.verifier_workdir,
            hf_dir=args.verifier_hf,
            ref_workdir=args.ref_workdir,
            tokenizer=tok,
            marker=marker,
        )
    if args.method in ("majority", "best_of_n", "weighted_vote"):
        sols = search.sample_solutions(
            pol,
            problems,
            args.n,
            rng,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
        )
        vtok = search.score_solutions(ver, problems, sols) if ver is not None else 0
        if args.method == "majority":
            answers = [search.majority_vote([s.answer for s in xs]) for xs in sols]
        else:
            sel = "argmax" if args.method == "best_of_n" else "weighted_vote"
            answers = [search.best_of_n(xs, args.agg, sel) for xs in sols]
        gen = sum(s.gen_tokens for xs in sols for s in xs)
    else:
        rank = search.last_step_ranker(ver)
        if args.method == "pav_beam":
            if not args.pav_workdir:
                raise SystemExit("prm-jax search: pav_beam needs --pav-workdir")
            pav = load_verifier("score", workdir=args.pav_workdir, tokenizer=tok, marker=marker)
            rank = search.pav_ranker(ver, pav, args.alpha)
        res = search.beam_search(
            pol,
            problems,
            rng,
            n_beams=args.n,
            width=args.width,
            rank_fn=rank,
            final_fn=search.last_step_ranker(ver),
            max_steps=args.max_steps,
            temperature=args.temperature,
            top_p=args.top_p,
            finish_tokens=args.max_new_tokens,
        )
        answers = [r.answer for r in res]
        gen, vtok = sum(r.gen_tokens for r in res), sum(r.verifier_tokens for r in res)
    acc = float(np.mean([same(a, g) for a, g in zip(answers, gold)]))
    out = {
        "method": args.method,
        "n": args.n,
        "problems": len(problems),
        "accuracy": acc,
        "gen_tokens_per_problem": gen / len(problems),
        "verifier_tokens_per_problem": vtok / len(problems),
        "sampler_tokens_per_s": pol.sampler.tokens_per_second,
    }
    print(jsonio.dumps(out))
    if args.out:
        jsonio.dump(out, args.out)
    return 0
