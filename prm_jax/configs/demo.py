"""The demo's config: policy SFT -> MC labels -> six verifiers -> search, on the arithmetic task.

`prm-jax demo` runs `get_config('full')` (or `--config quick`, the plumbing check the tests run);
`--config.a.b=v` overrides any key, e.g. `--config.policy.train.steps=2000`. Sections:
  seed        offsets every random choice of the run (problems, sampling, labelling, training, bootstrap)
  task        the arithmetic task (ArithConfig fields) of policy, labels and evaluation
  policy      the SFT policy's training config (the base config's keys)
  verifier_base  the verifiers' starting point: the policy trained on for a few more SFT steps
  labelling   solutions sampled per problem, MC rollouts, the PAV prover, OmegaPRM's share, split,
              and the implicit PRM's outcome-labelled problems
  verifier_passes  epochs of each verifier over its training solutions (sets its steps)
  verifier_data    which stage's train.jsonl each verifier reads: 'labels' (MC) or 'outcomes'
  verifiers   the verifier runs: one training config per verifier (bce, exact, qpi, orm, pav, implicit),
              starting from the verifier base's weights
  search      held-out problems, N, beam width, PAV alpha, bootstrap, sampler and verifier budgets
`experiments/arith_demo.py` documents this file and re-exports it, so the installed package carries the
demo (an install without experiments/ can run it).
"""

from __future__ import annotations

import ml_collections

from prm_jax.configs import base

# The tiny policy learns to look values up by name only after ~500 SFT steps at batch 32 (in a
# 1,500-step cosine run the loss fell from ~0.3 to ~0.05 per token between steps 450 and 800; at batch
# 16 it had not started after 1,000 steps), and when depends on the seed. At 700 steps (the first
# demo) one sample was right 15-26% of the time depending on the seed, and 70% of those right answers
# came from wrong steps (only 3-7% of solutions had every step right): MC labels of such a policy are
# mostly noise. 1,100 steps put it past the transition on the seeds tried (one sample right ~40-55%,
# most right answers from right steps; 1,300 steps: 51-59%); 1,100 is what the 600 s budget allows.
# `self_sub=False` (no `d = c - c`, whose answer no earlier error can change) moves the transition
# later: 21-26% right after 1,100 steps instead of 39-49%.
# Seeds 5 and 7 had not passed the transition at 1,100 steps (one sample right 0.331 / 0.195, most
# first errors a given value copied from the wrong name; seed 5 still so at 1,500 steps). lr 5e-3 after
# a 100-step warm-up with 4 key/value heads (not shared) took both past it in runs pinned to one core,
# but the transition is chaotic: the same seed's policy trained on two cores (float rounding differs)
# was stuck on seeds 0 and 2 of 0-3 with that schedule, and this one's on seeds 5 and 7 of 0-7; so the
# demo keeps this schedule (benchmarks/NOTES.md, seventeenth session).
# What moved the transition was the format (eighteenth session; two cores; one sample right after
# 1,100 steps, `benchmarks/policy_steps.py`): with every value written right after its name
# (`named_values`: `a5` in the prompt, `d = a5 + b4 = d9` in a step) a look-up copies what follows an
# earlier occurrence of the name. Seeds 3 / 7: 0.471 / 0.133 spaced, 0.230 / 0.414 with a colon
# (`a:5`, seed 3 stuck there; seeds 0 / 1 / 2 / 5: 0.471 / 0.561 / 0.512 / 0.479), 0.621 / 0.518 as
# here. A third layer (0.285 on seed 5, 0.328 spaced) or 8 heads of 8 (0.322) did not move it, and up to
# 5 given values (more distractors) made it worse (0.174).
TASK = dict(
    min_given=2,
    max_given=3,
    min_steps=2,
    max_steps=3,
    max_operand=9,
    max_result=99,
    operators=("+", "-"),
    named_values=True,
)
VERIFIERS = ("bce", "exact", "qpi", "orm", "pav", "implicit")
OBJECTIVE = {"bce": "bce", "exact": "bce", "qpi": "bce", "orm": "orm", "pav": "pav", "implicit": "implicit_ce"}
# Math-Shepherd's two label kinds: hard (some rollout reached the answer) or soft (the MC fraction).
# The Q^pi verifier always learns the soft fraction: the policy's own success probability. The exact-label
# PRM learns the task's exact step correctness (PRM800K's human labels' analogue): the labels' ceiling.
# The implicit PRM reads outcome labels alone (WORKDIR/outcomes/train.jsonl, `labelling.outcome_budget`).
LABEL_FIELD = {"bce": "hard_labels", "exact": "exact_labels", "qpi": "labels", "orm": "labels", "pav": "labels"}
# Which stage's train.jsonl each verifier reads: the MC-labelled solutions (labels/) or the solutions
# bought at the same sampler cost with no rollouts (outcomes/: outcome labels, and the task's exact step
# correctness, which costs no rollout either). On the 896 MC-labelled solutions the exact-label probe
# fell short of its own likelihood feature (validation AUROC vs exact truth 0.953 / 0.963 / 0.920 on
# seeds 0 / 1 / 2, the feature alone 0.966 / 0.957 / 0.931); on the ~5,000 outcome solutions with
# exact labels 0.970 / 0.960 / 0.944 (held-out samples: 0.960 / 0.963 / 0.938 -> 0.968 / 0.966 /
# 0.948; benchmarks/NOTES.md). Fine-tuning the whole model on those labels did no better (seed 2:
# 0.66 with the likelihood read from the tuned model, 0.94 with it read from the frozen policy).
VERIFIER_DATA = {
    "bce": "labels",
    "exact": "outcomes",
    "qpi": "labels",
    "orm": "labels",
    "pav": "labels",
    "implicit": "outcomes",
}
SEQ_LEN = 144  # the longest 3-step solution with its prompt is 136 tokens: none truncated
FINAL_ONLY = 10**9  # train.ckpt_every: only the last step's checkpoint (the loop always saves the last step)
WHOLE_RUN = 10**9  # optim.head_only_steps: the score head alone trains, on the frozen body (the base)


def _training(objective: str) -> ml_collections.ConfigDict:
    """Returns the base config as the demo trains `objective`: tiny model, char tokenizer."""
    c = base.get_config()
    c.objective = objective
    # Every demo model carries the likelihood features of the score head (model.ModelConfig): without
    # them the 2-layer verifiers were nearly blind to a wrong digit (step AUROC 0.67-0.82 even on exact
    # labels, argmax best-of-N falling with N); the policy's own likelihood of the shown tokens alone
    # separates right from wrong steps at AUROC 0.99 on seed 0's labelled solutions.
    c.model.update(preset="tiny", vocab_size="tokenizer", score_likelihood=True)
    c.data.update(tokenizer="char", add_eos=True)
    c.optim.update(lr=3e-3, warmup=10, weight_decay=0.01)
    c.train.update(seq_len=SEQ_LEN, log_every=10, keep_ckpts=2, eval_batches=2)
    # One chunk: with a 100-symbol vocabulary the [B, L, V] logits are a few MB, and the chunked map
    # cost a quarter of each SFT step (150 steps: 43 s -> 35 s); verifier scoring reads it too.
    c.loss.logprob_chunk = 2**16
    return c


def _policy(steps: int, batch: int, seed) -> ml_collections.ConfigDict:
    c = _training("sft")
    c.train.seed = seed
    c.data.arith.update(TASK, corrupt_prob=0.1)  # the policy also imitates some planted errors
    c.optim.decay = "constant"  # under a cosine decay over 800 steps the look-up transition comes too late
    c.train.update(steps=steps, ckpt_every=FINAL_ONLY, batch_size=batch)
    return c


def _verifier(name: str, batch: int, seed) -> ml_collections.ConfigDict:
    c = _training(OBJECTIVE[name])
    if name == "implicit":
        c.data.source = "outcome_jsonl"  # path: WORKDIR/outcomes/train.jsonl
    else:
        # path: WORKDIR/{VERIFIER_DATA[name]}/train.jsonl
        c.data.update(source="stepwise_jsonl", label_field=LABEL_FIELD[name])
    # steps 0: set at run time to verifier_passes epochs over the labelled solutions
    c.train.update(steps=0, ckpt_every=FINAL_ONLY, batch_size=batch, seed=seed)
    if name != "implicit":
        # A probe on the frozen base. Fine-tuning the whole 2-layer model on ~900 labelled solutions
        # overfit (validation AUROC 0.73-0.75 with exact labels) and moved the language model, so the
        # likelihood feature that sees wrong digits fell from AUROC 0.99 to 0.60-0.73.
        c.optim.head_only_steps = WHOLE_RUN
    if name == "exact":
        # The probe is a logistic regression on frozen features, and at lr 3e-3 its ~56 steps left it
        # short of what its likelihood feature alone gives. Seed 0's validation draw (256 problems x 16
        # no demo stage uses; its BCE head trained at each lr from labels/train.jsonl), step AUROC vs
        # exact truth at lr 3e-3 / 1e-2 / 3e-2 / 5e-2 / 1e-1: 0.931 / 0.938 / 0.945 / 0.951 / 0.950
        # (likelihood feature 0.953). The MC-label probes lose against exact truth at a higher lr (BCE
        # 0.910 / 0.900 / 0.856 at 3e-3 / 1e-2 / 3e-2: they fit their labels' noise), so they keep 3e-3.
        c.optim.lr = 5e-2
    if name == "implicit":
        # Reference: the trained SFT policy. The paper's beta is 0.05 (7B models). beta and lr were chosen
        # on seed 0's validation problems (256 problems no demo stage uses, x 16 samples;
        # `benchmarks/label_budget.py --problems 0 --score-on validation`; BCE-PRM there 0.652). At lr
        # 1e-3, best-of-16 0.547 / 0.559 / 0.605 / 0.629 / 0.602 at beta 0.05 / 0.1 / 0.2 / 0.3 / 0.5
        # (step AUROC 0.907 / 0.907 / 0.916 / 0.905 / 0.888). With a larger beta the same outcome logit
        # needs smaller log-ratios, and the noisy ratios on tokens the reference rarely draws are what
        # argmax best-of-N found (benchmarks/NOTES.md). At beta 0.2: lr 3e-3 / 1e-3 / 5e-4 / 2.5e-4 gave
        # 0.527 / 0.605 / 0.637 / 0.625; 4 passes 0.582 (1e-3), 0.629 (2.5e-4); the DPO loss on pairs of
        # one problem's right and wrong solutions 0.566 (2 passes), 0.570 (4). Chosen again once the
        # verifiers started from the verifier base (it starts there, its reference the policy), on the
        # validation problems of seeds 0 / 1 (BCE-PRM 0.848 / 0.844): beta 0.2 at lr 5e-4 0.855 / 0.809,
        # lr 1e-3 0.844 / 0.816, lr 2.5e-4 0.824 / 0.801; beta 0.5 at lr 5e-4 0.867 / 0.844 (twentieth
        # session, after the held-out figures had shown it trailing the BCE-PRM on five seeds).
        c.optim.lr = 5e-4
        c.loss.beta = 0.5
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the demo config: 'full' (the README's run, ~7 min on 2 CPU cores) or 'quick'."""
    arg = arg or "full"
    if arg not in ("full", "quick"):
        raise ValueError(f"demo config: unknown variant {arg!r}; choose 'full' or 'quick'")
    quick = arg == "quick"
    c = ml_collections.ConfigDict()
    c.stage = "demo"
    seed = ml_collections.FieldReference(0)
    # Problems, sampling, labelling and bootstrap draw from seed + fixed offsets; the policy's and the
    # verifiers' train.seed are this same reference (overriding any of them moves all).
    c.seed = seed
    # Sampler rows per decode step (labelling and search). What a request draws does not depend on it
    # (seed 0's final.json is byte-identical at 64 and 256). On the 2-core CPU, continuous batching keeps
    # 64 rows busy, and they run faster than 256: seed 0's labelling sampler made 28.3k / 29.6k new
    # tokens/s at 64, 24.7k at 128, 18.6k / 19.5k at 256, and 30.1k at 32 (benchmarks/NOTES.md).
    c.sample_batch = 64
    c.task = ml_collections.ConfigDict(dict(base.arith_section(), **TASK))
    c.policy = _policy(40 if quick else 1100, 16 if quick else 32, seed)
    # The verifiers' base: the policy's weights after `verifier_base.train.steps` more SFT steps on fresh
    # records of the task (stream seed + 3; fresh optimizer state). Every verifier starts from it (the
    # implicit PRM's reference stays the policy); 0 steps: they start from the policy itself. Read from
    # the policy alone, every score head shared the policy's likelihood, so none could see an error the
    # policy makes confidently: weighted votes tied majority, and fine-tuning, 10x exact labels or a
    # whole-model verifier did not move it (benchmarks/NOTES.md, nineteenth session). A verifier must
    # know the task better than the policy to check it. On validation problems (256 x 16, a draw no demo
    # stage uses) the base's likelihood alone picked best-of-16 0.867 / 0.844 on seeds 0 / 5 after 150
    # steps (another stream seed), 0.852 / 0.828 after 300, against the policy's 0.773 / 0.770 and
    # majority's 0.762 / 0.719 (benchmarks/NOTES.md, twentieth session). ~30 s of demo wall.
    c.verifier_base = _policy(10 if quick else 150, 16 if quick else 32, seed + 3)
    c.labelling = ml_collections.ConfigDict(
        dict(
            # 8 solutions of each of 128 problems rather than 4 of 256: with 4, many problems have only
            # right or only wrong solutions, and the verifiers learned which problems are hard (small
            # numbers: easy) instead of which step is wrong, so within a problem they preferred wrong
            # solutions (Spearman -0.14 between BCE-PRM score and correctness; -0.03 with 8 per problem)
            problems=8 if quick else 128,  # problems whose sampled solutions are labelled
            samples=2 if quick else 8,  # policy solutions per problem
            val_frac=0.25 if quick else 0.125,  # share of those problems held out for validation
            # MC rollouts per step prefix: Math-Shepherd's N = 8. Against K = 4 on the five seeds' held-out
            # problems (one try, the same policies; README, benchmarks/NOTES.md): BCE-PRM step AUROC
            # 0.898-0.970 -> 0.901-0.967, and the outcome labels, bought with the same sampler tokens,
            # ~5,000 -> ~9,000 solutions (implicit PRM within 3 points of the BCE-PRM on 3 seeds, from 1).
            # Seeds 5-7, run after the choice, did not confirm a gain in the figures (10 of 18 at
            # K = 8, 12 at K = 4; 35 vs 34 of 48 over eight seeds). +55-65 s of demo wall after the policy,
            # most of it the implicit PRM's training (`make demo`: 419 s and 524 s, an hour apart).
            k=2 if quick else 8,
            prover="bok:4",  # the PAV's prover: 'bok:K' | 'temperature:T' | 'same'
            omega_solutions=8 if quick else 96,  # OmegaPRM runs on these first solutions (a cost comparison)
            # Token budget of a sampled solution: the search's (search.max_new_tokens), so the verifiers
            # learn from solutions like the ones they rank. The longest right 3-step solution is ~110
            # tokens; at 256, 8% of solutions ran on without EOS and their long prefixes cost 4 of the
            # labelling stage's 8 sampler compiles.
            solution_tokens=128,
            max_new_tokens=128,  # token budget of an MC rollout
            # The implicit PRM's outcome-labelled solutions, bought with this multiple of the sampler
            # tokens the MC labels cost (solutions, rollouts, OmegaPRM): the label problems' draw
            # continued, `samples` per problem, their validation problems left out. An outcome label
            # costs no rollout, so at 1.0 it gets ~10x the MC labels' solutions at K = 8 (~5x at K = 4).
            # Best-of-16 on seeds 0 / 1 / 2 (K = 4, AMD machine, beta 0.05, lr 1e-3; benchmarks/NOTES.md):
            # 0.488 / 0.199 / 0.516 at 0.17 (~900 solutions, as many as the MC labels have), 0.562 /
            # 0.230 / 0.660 at 1.0; the BCE-PRM's 0.695 / 0.363 / 0.746.
            outcome_budget=1.0,
        )
    )
    batch = 16 if quick else 32
    c.verifier_passes = 1.0 if quick else 2.0  # epochs of each verifier over its training solutions
    c.verifier_data = ml_collections.ConfigDict(VERIFIER_DATA)  # each verifier's data: 'labels' | 'outcomes'
    c.verifiers = ml_collections.ConfigDict({name: _verifier(name, batch, seed) for name in VERIFIERS})
    c.search = ml_collections.ConfigDict(
        dict(
            problems=6 if quick else 256,  # held-out problems
            n=4 if quick else 16,  # samples per problem (best-of-N) and beams
            beam_width=2 if quick else 4,  # next steps sampled per kept beam
            alpha=0.5,  # PAV beam: rank by Q^pi + alpha * A^mu
            max_new_tokens=128,
            beam_max_steps=6,
            step_tokens=48,  # a beam step's token budget
            n_boot=200,  # bootstrap replicates of the accuracy-vs-N curves
        )
    )
    return c
