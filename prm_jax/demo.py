"""The main job: policy SFT -> MC step labels and PAV targets -> six verifiers -> search -> report.md.

Every setting is in the demo config (`prm_jax/configs/demo.py`, documented by experiments/arith_demo.py);
each stage is one library call:
  1. policy/     `loop.run(config.policy)`: SFT of a tiny policy on gold + corrupted arithmetic
                 solutions (it learns to err);
     base/       `loop.run(config.verifier_base)`: the policy trained on for a few more SFT steps, the
                 verifiers' starting point (none when its steps are 0: they start from the policy);
  2. labels/     `labeling.label_and_split`: solutions sampled from the policy, Math-Shepherd MC labels,
                 OmegaPRM's cost comparison, PAV targets (the prover's Q), exact step correctness in
                 `meta`, split by problem into train.jsonl / val.jsonl;
  3. outcomes/   `labeling.sample_outcomes`: more policy solutions with their outcome label and exact step
                 correctness, no rollouts (the implicit PRM's and the exact-label PRM's data), bought
                 with `labelling.outcome_budget` x the MC labels' sampler tokens;
  4. bce/ exact/ qpi/ orm/ pav/ implicit/   `loop.run(config.verifiers.NAME)` on the train.jsonl of
                 `config.verifier_data.NAME` (labels/ or outcomes/), from the verifier base's weights
                 (the implicit PRM's reference: the policy);
  5. eval.json   `search.evaluate_methods` on held-out problems (majority vote, best-of-N per verifier
                 and aggregation, the policy's and the verifier base's likelihood as label-free
                 baselines, BCE beam and PAV beam search) and `evaluate.step_validation`;
  6. report.md, report.json (every figure with its CI, the paper's claim and whether it holds),
     accuracy_vs_n.png, accuracy_vs_compute.png, solution_steps.png (`report.write_report`); the table is printed.
Each stage is skipped when its output exists, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from prm_jax import config as config_lib
from prm_jax import evaluate, jsonio, labeling, loop, report, sampling, search
from prm_jax.data import arith
from prm_jax.data.tokenizers import default_marker
from prm_jax.verifier import Verifier, likelihood_verifier


def default_config(variant: str = "full"):
    """Returns the packaged demo config (`prm_jax/configs/demo.py:get_config(variant)`), locked."""
    from prm_jax.configs import demo as demo_config

    c = demo_config.get_config(variant)
    c.lock()
    return c


def _problems(task, seed: int, n: int) -> list[str]:
    cfg = arith.ArithConfig.from_dict(task)
    rng = np.random.default_rng(seed)
    return [arith.sample_problem(cfg, rng).text for _ in range(n)]


def held_out_problems(c, n: int | None = None) -> list[str]:
    """Returns the evaluation's held-out problems: the first `n` (all `c.search.problems` when None) of
    the draw at seed + 2, which no labelling stage uses."""
    return _problems(c.task, c.seed + 2, c.search.problems if n is None else n)


def _grade(problem, steps) -> bool:
    return arith.is_correct(problem, steps)


def _finish(out: str, metrics: dict) -> None:
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write(json.dumps({"loss": metrics.get("loss")}))


def stage_policy(workdir: str, c, log) -> None:
    """Trains the SFT policy into WORKDIR/policy (skipped when it is DONE)."""
    out = os.path.join(workdir, "policy")
    if os.path.exists(os.path.join(out, "DONE")):
        log("policy: exists, skipped")
        return
    m = loop.run(config_lib.complete(c.policy, where="config.policy"), out)
    _finish(out, m)
    log(f"policy: SFT done, final loss {m.get('loss'):.4f}")


def verifier_init(workdir: str, c) -> str:
    """Returns the run folder the verifiers start from: WORKDIR/base, or WORKDIR/policy when
    `config.verifier_base.train.steps` is 0."""
    return os.path.join(workdir, "base" if c.verifier_base.train.steps > 0 else "policy")


def stage_base(workdir: str, c, log) -> None:
    """Trains the verifier base into WORKDIR/base from the policy's weights (skipped when it is DONE or
    has 0 steps)."""
    out = os.path.join(workdir, "base")
    if c.verifier_base.train.steps <= 0:
        log("base: 0 steps, the verifiers start from the policy: skipped")
        return
    if os.path.exists(os.path.join(out, "DONE")):
        log("base: exists, skipped")
        return
    b = config_lib.complete(c.verifier_base, where="config.verifier_base")
    b.init.workdir = os.path.join(workdir, "policy")
    m = loop.run(b, out)
    _finish(out, m)
    log(f"base: {b.train.steps} more SFT steps from the policy, final loss {m.get('loss'):.4f}")


def _data_stage(workdir: str, name: str, log) -> tuple[str, dict | None]:
    """Returns (WORKDIR/NAME, made if missing; its stats.json when the stage already ran, else None)."""
    folder = os.path.join(workdir, name)
    if os.path.exists(os.path.join(folder, "stats.json")):
        log(f"{name}: exist, skipped")
        return folder, jsonio.load(os.path.join(folder, "stats.json"))
    os.makedirs(folder, exist_ok=True)
    return folder, None


def stage_labels(workdir: str, c, log) -> dict:
    """Writes WORKDIR/labels/{train,val}.jsonl and stats.json; returns the labelling stats."""
    folder, done = _data_stage(workdir, "labels", log)
    if done is not None:
        return done
    lab = c.labelling
    pol = sampling.load_policy(os.path.join(workdir, "policy"), max_batch=c.sample_batch)
    train, val, stats = labeling.label_and_split(
        pol,
        _problems(c.task, c.seed + 1, lab.problems),
        jax.random.PRNGKey(c.seed + 1),
        samples=lab.samples,
        k=lab.k,
        prover=lab.prover,
        val_frac=lab.val_frac,
        omega_solutions=lab.omega_solutions,
        solution_tokens=lab.solution_tokens,
        max_new_tokens=lab.max_new_tokens,
        grade=_grade,
        answer_fn=lambda p: str(arith.parse_problem(p).answer),
        step_truth=arith.check_steps,
        first_error=arith.first_error,
    )
    labeling.write_jsonl(os.path.join(folder, "train.jsonl"), train)
    labeling.write_jsonl(os.path.join(folder, "val.jsonl"), val)
    jsonio.dump(stats, os.path.join(folder, "stats.json"))
    log(
        f"labels: {len(train) + len(val)} solutions ({len(train)} train / {len(val)} val), "
        f"{stats['mc_rollouts']} MC rollouts, OmegaPRM {stats['omega_rollouts']}; "
        f"sampler {stats['sampler_tokens_per_s']:.0f} tok/s"
    )
    return stats


def outcome_problem_count(label_stats: dict, budget: float, samples: int) -> int:
    """Returns how many problems of `samples` solutions each cost `budget` times the MC labels' sampler
    tokens, at the tokens per solution the labelling stage measured."""
    per_solution = label_stats["solution_tokens_sampled"] / max(label_stats["solutions_sampled"], 1)
    return max(1, int(np.ceil(budget * label_stats["sampler_tokens"] / (samples * max(per_solution, 1.0)))))


def stage_outcomes(workdir: str, c, log) -> dict:
    """Writes WORKDIR/outcomes/train.jsonl (outcome-labelled solutions, the implicit PRM's data, sized
    by `labelling.outcome_budget`) and stats.json; returns the stats."""
    folder, done = _data_stage(workdir, "outcomes", log)
    if done is not None:
        return done
    lab = c.labelling
    # The label problems' own draw, continued: its first `labelling.problems` are the MC label problems.
    # Their validation problems stay out, so every verifier is validated on problems it never saw.
    val = {r["prompt"] for r in labeling.read_jsonl(os.path.join(workdir, "labels", "val.jsonl"))}
    n = outcome_problem_count(
        jsonio.load(os.path.join(workdir, "labels", "stats.json")), lab.outcome_budget, lab.samples
    )
    m = n + len(val)
    while len(problems := [p for p in _problems(c.task, c.seed + 1, m) if p not in val]) < n:
        m *= 2  # the validation problems recur later in the draw
    problems = problems[:n]
    pol = sampling.load_policy(os.path.join(workdir, "policy"), max_batch=c.sample_batch)
    recs, stats = labeling.sample_outcomes(
        pol,
        problems,
        jax.random.fold_in(jax.random.PRNGKey(c.seed + 1), 3),  # folds 0-2: label_and_split's
        samples=lab.samples,
        solution_tokens=lab.solution_tokens,
        grade=_grade,
        step_truth=arith.check_steps,
    )
    stats["outcome_budget"] = lab.outcome_budget
    jsonio.write_jsonl(os.path.join(folder, "train.jsonl"), recs)
    jsonio.dump(stats, os.path.join(folder, "stats.json"))
    log(
        f"outcomes: {stats['outcome_solutions']} solutions of {len(problems)} problems, "
        f"{stats['outcome_accuracy']:.3f} right, {stats['outcome_sampler_tokens']} sampler tokens"
    )
    return stats


def verifier_data(workdir: str, c, name: str) -> tuple[str, int]:
    """Returns (path, solutions) of verifier `name`'s training data, WORKDIR/STAGE/train.jsonl."""
    stage = c.verifier_data[name]
    if stage not in ("labels", "outcomes"):
        raise ValueError(f"config.verifier_data.{name}: {stage!r}; choose 'labels' or 'outcomes'")
    path = os.path.join(workdir, stage, "train.jsonl")
    return path, sum(1 for line in open(path) if line.strip())


def verifier_config(workdir: str, c, name: str):
    """Returns the training config of verifier `name`: its demo section with its data's path
    (WORKDIR/{config.verifier_data[name]}/train.jsonl), `verifier_init` as initial weights, the policy
    as the implicit PRM's reference, and `verifier_passes` epochs as its steps."""
    v = config_lib.complete(c.verifiers[name], where=f"config.verifiers.{name}")
    path, n_train = verifier_data(workdir, c, name)
    init = verifier_init(workdir, c)
    # A few passes over many labelled solutions, not many passes over few (those overfit).
    v.train.steps = max(1, int(np.ceil(c.verifier_passes * n_train / v.train.batch_size)))
    v.data.path = path
    v.init.workdir = init
    if v.objective in ("implicit_ce", "implicit_dpo"):
        # The reference is the policy whose solutions it scores, not the base it starts from: with the
        # base as both, its rewards start at 0 and only outcome labels move them, while every score head
        # reads the base's likelihood. On validation problems (256 x 16, seeds 0 / 3) best-of-16 was
        # 0.855 / 0.840 with the policy as reference, 0.820 / 0.797 with the base; the BCE-PRM's
        # 0.848 / 0.855 (benchmarks/NOTES.md, twentieth session).
        v.init.ref_workdir = os.path.join(workdir, "policy")
    return v


def stage_verifier(workdir: str, name: str, c, log) -> None:
    """Trains verifier `name` into WORKDIR/NAME (skipped when it is DONE)."""
    out = os.path.join(workdir, name)
    if os.path.exists(os.path.join(out, "DONE")):
        log(f"{name}: exists, skipped")
        return
    v = verifier_config(workdir, c, name)
    m = loop.run(v, out)
    _finish(out, m)
    log(f"{name}: trained {v.train.steps} steps ({c.verifier_passes} passes), final loss {m.get('loss'):.4f}")


def load_verifiers(workdir: str, names, ref_root: str | None = None) -> dict:
    """Returns {name: Verifier} of the trained verifier runs WORKDIR/NAME (parameters only); an implicit
    PRM's reference is the same-named stage of `ref_root` (default `workdir`: the demo run itself; a
    benchmark that trains variants of a run's verifiers elsewhere passes that run)."""
    out = {}
    for name in names:
        cfg, params, config = loop.load_trained(os.path.join(workdir, name))
        tok = loop.make_tokenizer(config)
        marker = default_marker(tok)
        if config.objective in ("implicit_ce", "implicit_dpo"):
            # The reference is a stage of the run (`verifier_config`: policy/): read from where the run is
            # now, not from the path saved at training time, so a run folder can be moved or renamed.
            ref_dir = os.path.join(ref_root or workdir, os.path.basename(config.init.ref_workdir))
            _, ref, _ = loop.load_trained(ref_dir)
            out[name] = Verifier(
                "implicit",
                cfg,
                params,
                tok,
                marker=marker,
                ref_params=ref,
                beta=float(config.loss.beta),
                name=name,
                logprob_chunk=int(config.loss.logprob_chunk),
            )
        else:
            out[name] = Verifier(
                "score", cfg, params, tok, marker=marker, name=name, logprob_chunk=int(config.loss.logprob_chunk)
            )
    return out


def likelihood_baseline(workdir: str, stage: str = "policy", name: str = "likelihood") -> Verifier:
    """Returns `verifier.likelihood_verifier` of a language-model stage of the demo (WORKDIR/STAGE:
    the policy, or the verifier base)."""
    cfg, params, config = loop.load_trained(os.path.join(workdir, stage))
    tok = loop.make_tokenizer(config)
    return likelihood_verifier(
        cfg, params, tok, marker=default_marker(tok), name=name, logprob_chunk=int(config.loss.logprob_chunk)
    )


def likelihood_baselines(workdir: str) -> dict:
    """Returns the label-free baselines every trained verifier must beat: {'likelihood': the policy's own
    confidence, 'base_likelihood': that of the verifier base, where WORKDIR/base is a finished stage}."""
    out = {"likelihood": likelihood_baseline(workdir)}
    if os.path.exists(os.path.join(workdir, "base", "DONE")):
        out["base_likelihood"] = likelihood_baseline(workdir, "base", "base_likelihood")
    return out


# The two beam searches: BCE beam ranks and answers by the BCE-PRM; PAV beam (Setlur et al.) ranks by
# Q^pi + alpha * A^mu, Q^pi from the soft-label verifier of the policy itself, A^mu from the PAV (the
# Best-of-K prover's Q), and answers by Q^pi.
BEAMS = {
    "beam_bce": {"rank": "bce", "advantage": None, "answer": "bce"},
    "beam_pav": {"rank": "qpi", "advantage": "pav", "answer": "qpi"},
}


def stage_eval(workdir: str, c, log) -> dict:
    """Writes WORKDIR/eval.json (search methods and held-out validation); returns it."""
    path = os.path.join(workdir, "eval.json")
    if os.path.exists(path):
        log("eval: exists, skipped")
        return jsonio.load(path)
    s = c.search
    pol = sampling.load_policy(os.path.join(workdir, "policy"), max_batch=c.sample_batch)
    vs = load_verifiers(workdir, list(c.verifiers))
    vs.update(likelihood_baselines(workdir))
    problems = held_out_problems(c)
    res = search.evaluate_methods(
        pol,
        vs,
        problems,
        [arith.parse_problem(p).answer for p in problems],
        jax.random.PRNGKey(c.seed + 2),
        n=s.n,
        beams=BEAMS,
        beam_width=s.beam_width,
        alpha=s.alpha,
        max_new_tokens=s.max_new_tokens,
        beam_max_steps=s.beam_max_steps,
        step_tokens=s.step_tokens,
        n_boot=s.n_boot,
        seed=c.seed,
        step_truth=arith.check_steps,
    )
    res["val"] = evaluate.step_validation(vs, labeling.read_jsonl(os.path.join(workdir, "labels", "val.jsonl")))
    res["seed"] = c.seed
    jsonio.dump(res, path)
    return res


def headline(res: dict) -> dict:
    """Returns the run's headline numbers: seed, policy accuracy, accuracy at the largest N of the main
    methods, and step AUROC per verifier (WORKDIR/final.json, one row of a seed sweep)."""
    out = {"seed": res.get("seed"), "policy_accuracy": res["policy_accuracy"]}
    out.update({f"acc@N/{k}": res["curves"][k]["acc"][-1] for k in report.MAIN if k in res["curves"]})
    out.update({f"auroc/{k}": v for k, v in res["auroc"].items()})
    return out


def run(workdir: str, config=None, log=print) -> dict:
    """Runs every stage of `config` (default: the packaged 'full' demo), skipping finished ones;
    returns {'eval', 'labels', 'wall', 'figures'}."""
    c = config if config is not None else default_config("full")
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config_lib.to_json(c))
    log(f"demo: seed {c.seed}, config written to {os.path.join(workdir, 'config.json')}")
    wall, t_all, skipped = {}, time.perf_counter(), set()
    # A resumed run reports the time each stage took when it ran, not the time of skipping it.
    wall_path = os.path.join(workdir, "wall.json")
    ran = jsonio.load(wall_path) if os.path.exists(wall_path) else {}

    def timed(name, fn, *a):
        t0 = time.perf_counter()

        def stage_log(msg):
            if msg.endswith("skipped"):
                skipped.add(name)
            log(msg)

        out = fn(*a[:-1], stage_log)
        wall[name] = ran[name] if name in skipped and name in ran else round(time.perf_counter() - t0, 1)
        ran[name] = wall[name]
        jsonio.dump(ran, wall_path)
        log(f"stage {name}: {wall[name]:.1f}s" + (" (when it ran)" if name in skipped else ""))
        return out

    timed("policy", stage_policy, workdir, c, log)
    timed("base", stage_base, workdir, c, log)
    label_stats = timed("labels", stage_labels, workdir, c, log)
    label_stats = {**label_stats, **timed("outcomes", stage_outcomes, workdir, c, log)}
    for name in c.verifiers:
        timed(name, stage_verifier, workdir, name, c, log)
    label_stats["verifier_solutions"] = {name: verifier_data(workdir, c, name)[1] for name in c.verifiers}
    res = timed("eval", stage_eval, workdir, c, log)
    # a resumed run: the sum of its stages' times when they ran (start-up not counted)
    wall["total"] = round(sum(wall.values()) if skipped else time.perf_counter() - t_all, 1)
    table = report.write_report(workdir, res, label_stats, wall)
    jsonio.dump(headline(res), os.path.join(workdir, "final.json"))  # what `prm-jax sweep` gathers
    log(table)
    log(f"report: {os.path.join(workdir, 'report.md')}  wall {wall['total']:.0f}s")
    return {"eval": res, "labels": label_stats, "wall": wall, "figures": report.figures(res, label_stats)}
