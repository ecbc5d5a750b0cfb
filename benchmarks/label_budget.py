"""Rollout-free label sources on more solutions: the implicit and exact-label PRMs at 1x / 4x / 8x data.

MC labels spend the sampler on rollouts (K per step prefix); outcome labels (the implicit PRM) and the
task's exact step labels need only the solutions, so the same sampler budget buys several times more
of them. This script samples `--problems` label problems x 8 solutions from a demo run's policy (the
demo's own label problems are the first 128; its validation problems, labels/val.jsonl, are left out), trains
each `--variants` entry on them with the demo config's training settings, and scores one fixed set of
256 held-out problems x 16 samples: step AUROC against exact ground truth and argmax best-of-16 (min and
last). The demo's own verifiers are scored on the same set first.

    python benchmarks/label_budget.py --workdir runs/demo --out /tmp/lb --problems 512 \
        --variants implicit:full:1e-3:2,exact:head:3e-3:2

A variant is KIND:MODE:LR:PASSES[:BETA[:LOSS]]: KIND a demo verifier (implicit, exact, ...), MODE
`head` (the score head alone on the frozen verifier base, or the policy where the run has none) or
`full`, LR the learning rate, PASSES epochs over the data, BETA the implicit PRM's beta (default: the demo config's), LOSS the implicit PRM's `ce`
(default) or `dpo` (pairs of a right and a wrong solution of one problem; PASSES are then epochs over
the pairs). `--problems 0` trains on the demo run's own outcome-labelled set
(WORKDIR/outcomes/train.jsonl; implicit variants only):

    python benchmarks/label_budget.py --workdir runs/demo --out /tmp/lb0 --problems 0 \
        --variants implicit:full:1e-3:2:0.05,implicit:full:1e-3:2:0.2
"""

from __future__ import annotations

import argparse
import os
import time

import common
import jax
import numpy as np

from prm_jax import demo, evaluate, jsonio, loop, sampling, search
from prm_jax.configs import demo as demo_config
from prm_jax.data import arith, pipeline, readers


def write_training_set(policy, problems, path: str, seed: int, c) -> int:
    """Writes `labelling.samples` sampled solutions per problem with exact step labels and outcome;
    returns the count."""
    t0 = time.perf_counter()
    lab = c.labelling
    sols = search.sample_solutions(
        policy, problems, lab.samples, jax.random.PRNGKey(1000 + seed), max_new_tokens=lab.solution_tokens
    )
    recs = []
    for p, xs in zip(problems, sols):
        for x in (x for x in xs if x.steps):
            exact = [float(v) for v in arith.check_steps(p, x.steps)]
            ok = bool(x.complete and arith.is_correct(p, x.steps))
            recs.append({"prompt": p, "completions": x.steps, "labels": exact, "exact_labels": exact, "correct": ok})
    jsonio.write_jsonl(path, recs)
    print(f"sampled {len(recs)} training solutions in {time.perf_counter() - t0:.1f}s")
    return len(recs)


def count_pairs(path: str, source: str) -> int:
    """Returns how many DPO pairs `data.pair` makes of the `source`-format jsonl at `path` (the training
    pipeline's own pairing, `pipeline.PairSource`)."""
    return len(pipeline.PairSource(readers.read_all(source, [path]), path))


def score(name, verifier, problems, sols, gold) -> dict:
    """Returns {auroc, bo16_min, bo16_last} of `verifier` on the fixed held-out samples (best-of-16
    through `search.pool_scores` and `evaluate.best_of_n_curve`, as the demo's eval computes them)."""
    flat = [(i, m) for i, xs in enumerate(sols) for m, x in enumerate(xs) if x["steps"]]
    out = verifier.score_all([problems[i] for i, _ in flat], [sols[i][m]["steps"] for i, m in flat])
    truth = [arith.check_steps(problems[i], sols[i][m]["steps"]) for i, m in flat]
    res = {"auroc": evaluate.step_auroc_ci(out["values"], truth, n_boot=20, seed=0)[0]}
    empty = np.zeros(0, np.float32)
    rewards = [[empty] * len(xs) for xs in sols]
    values = [[empty] * len(xs) for xs in sols]
    for (i, m), r, q in zip(flat, out["rewards"], out["values"]):
        rewards[i][m], values[i][m] = r, q
    correct = np.asarray([[x["answer"] == gold[i] for x in xs] for i, xs in enumerate(sols)])
    answers = [[x["answer"] for x in xs] for xs in sols]
    n = correct.shape[1]
    for how in ("min", "last"):
        sc = search.pool_scores(rewards, values, how)
        res[f"bo16_{how}"] = float(evaluate.best_of_n_curve(sc, correct, answers, ns=[n], n_boot=1).acc[0])
    print(f"RESULT {name}: " + " ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/demo", help="a finished demo run (its policy and verifiers)")
    p.add_argument("--out", required=True, help="folder for the training set, eval samples and runs")
    p.add_argument("--seed", type=int, default=0, help="the demo run's --config.seed")
    p.add_argument(
        "--problems", type=int, default=512, help="label problems (x 8 solutions); 0: the run's outcomes/train.jsonl"
    )
    p.add_argument(
        "--variants", default="implicit:full:1e-3:2", help="KIND:MODE:LR:PASSES[:BETA[:LOSS]], comma-separated"
    )
    p.add_argument(
        "--score-on",
        choices=("held-out", "validation"),
        default="held-out",
        help="held-out: the demo's held-out problems; validation: 256 other problems (a draw no demo stage "
        "uses, the held-out ones left out), to choose a setting without looking at the held-out problems",
    )
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    c = demo_config.get_config("full")
    c.seed = a.seed
    policy = sampling.load_policy(os.path.join(a.workdir, "policy"), max_batch=c.sample_batch)
    if a.problems:
        train_path, source = os.path.join(a.out, "train.jsonl"), "stepwise_jsonl"
        probs = demo._problems(c.task, a.seed + 1, a.problems)
        val = {r["prompt"] for r in jsonio.read_jsonl(os.path.join(a.workdir, "labels", "val.jsonl"))}
        n_train = write_training_set(policy, [q for q in probs if q not in val], train_path, a.seed, c)
    else:  # the demo's own outcome labels: no step labels, so implicit variants only
        train_path, source = os.path.join(a.workdir, "outcomes", "train.jsonl"), "outcome_jsonl"
        n_train = sum(1 for line in open(train_path) if line.strip())
    s = c.search
    problems = common.eval_problems(c, a.score_on)
    gold = [arith.parse_problem(q).answer for q in problems]
    ev = search.sample_solutions(
        policy, problems, s.n, jax.random.PRNGKey(2000 + a.seed), max_new_tokens=s.max_new_tokens
    )
    sols = [[{"steps": x.steps, "answer": x.answer} for x in xs] for xs in ev]
    results = {}
    vs = demo.load_verifiers(a.workdir, ["bce", "exact", "implicit"])
    vs.update(demo.likelihood_baselines(a.workdir))
    for k, v in vs.items():
        results[f"demo_{k}"] = score(f"demo_{k}", v, problems, sols, gold)
    for var in a.variants.split(","):
        kind, mode, lr, passes, *extra = var.split(":")
        if source == "outcome_jsonl" and kind != "implicit":
            raise SystemExit(f"error: {var}: --problems 0 holds outcome labels only; train implicit variants on it")
        v = demo.verifier_config(a.workdir, c, kind)
        # the step-wise file serves every kind: its `correct` is the implicit PRM's outcome label
        v.data.update(source=source, path=train_path, label_field="exact_labels")
        if extra:
            v.loss.beta = float(extra[0])
        n_rows = n_train
        if extra[1:] == ["dpo"]:
            v.objective, v.data.pair = "implicit_dpo", True
            n_rows = count_pairs(train_path, source)
        elif extra[1:] not in ([], ["ce"]):
            raise SystemExit(f"error: {var}: LOSS is ce or dpo")
        v.optim.lr = float(lr)
        if mode == "full":
            v.optim.head_only_steps = 0
        v.train.steps = int(np.ceil(float(passes) * n_rows / v.train.batch_size))
        name = var.replace(":", "_")
        t0 = time.perf_counter()
        loop.run(v, os.path.join(a.out, name))
        print(f"{var}: {v.train.steps} steps in {time.perf_counter() - t0:.1f}s")
        # an implicit variant's reference is the demo run's policy, not a folder under --out
        variant = demo.load_verifiers(a.out, [name], ref_root=a.workdir)[name]
        results[var] = score(var, variant, problems, sols, gold)
    jsonio.dump({"train_solutions": n_train, "results": results}, os.path.join(a.out, "results.json"))


if __name__ == "__main__":
    main()
