"""Demo stage 3: the verifiers, trained on the policy's own solutions with Monte-Carlo labels.

    prm-jax train --config experiments/arith_verifier.py:bce,demo --workdir runs/arith/bce
    prm-jax train --config experiments/arith_verifier.py:exact,demo --workdir runs/arith/exact
    prm-jax train --config experiments/arith_verifier.py:orm,demo --workdir runs/arith/orm
    prm-jax train --config experiments/arith_verifier.py:pav,demo --workdir runs/arith/pav
    prm-jax train --config experiments/arith_verifier.py:implicit_ce,demo --workdir runs/arith/implicit
    # soft vs hard MC labels for the BCE-PRM (two runs, one table + plot):
    prm-jax sweep --config experiments/arith_verifier.py:bce,demo --workdir runs/arith/soft_vs_hard --seeds 3
    # this CPU, about a minute each (tiny model, synthetic labels experiments/fixtures/mc_labels_tiny.jsonl):
    prm-jax train --config experiments/arith_verifier.py:bce,tiny --workdir /tmp/arith_bce

Argument `OBJECTIVE[,SIZE]`: OBJECTIVE in bce | exact | orm | pav | implicit_ce; SIZE in tiny (default) | demo.
The demo size reads `runs/arith/mc/labels/train.jsonl` (stage 2, experiments/arith_mc_label.py:
`labels` = soft MC fraction, `hard_labels`, `exact_labels` (the task's exact step correctness), `q` / `v0` = the prover's Q for the PAV, `correct`), and the
verifiers start from the SFT policy's weights (`runs/arith/policy`, stage 1), which is also the implicit
PRM's frozen reference; as in the demo, the score-head verifiers train their head on a frozen body (the
demo's starts them from a verifier base, the policy trained a few more SFT steps: `config.verifier_base`). Tiny runs start from random weights unless `--config.init.workdir` is given.
"""

from pathlib import Path

from prm_jax.configs import demo

MC_TINY = Path(__file__).resolve().parent / "fixtures" / "mc_labels_tiny.jsonl"  # synthetic, see README
# variant -> the demo's verifier; `exact` is the BCE-PRM on the task's exact step labels
OBJECTIVES = {"bce": "bce", "exact": "exact", "orm": "orm", "pav": "pav", "implicit_ce": "implicit"}
SIZES = ("tiny", "demo")


def get_config(arg=None):
    objective, _, size = (arg or "bce,tiny").partition(",")
    size = size or "tiny"
    if objective not in OBJECTIVES or size not in SIZES:
        raise ValueError(
            f"arith_verifier.py: bad variant {arg!r}; use OBJECTIVE[,SIZE], OBJECTIVE in "
            f"{tuple(OBJECTIVES)}, SIZE in {SIZES}"
        )
    c = demo.get_config("full").verifiers[OBJECTIVES[objective]]  # what `prm-jax demo` trains
    # soft MC; 'hard_labels' for hard (the sweep below); the exact-label PRM keeps its 'exact_labels'
    if objective != "exact":
        c.data.label_field = "labels"
    # The demo trains its implicit PRM on its own outcome-labelled set (WORKDIR/outcomes); here it reads
    # the MC labels' file, whose `correct` field is the same outcome label.
    c.data.source = "stepwise_jsonl"
    c.train.update(steps=200, ckpt_every=300, eval_every=100)
    # held-out steps scored against the task's exact correctness, whatever the run trains on, so the
    # soft-vs-hard sweep compares like with like
    c.data.eval_label_field = "exact_labels"
    c.data.eval_frac = 0.05  # in-training evaluation on problems held out by hash
    if size == "demo":
        c.data.path = "runs/arith/mc/labels/train.jsonl"
        c.init.workdir = "runs/arith/policy"
        if objective == "implicit_ce":
            c.init.ref_workdir = "runs/arith/policy"
    else:
        c.data.path = str(MC_TINY)
        c.train.update(steps=20, batch_size=4, log_every=1, ckpt_every=20, eval_every=20, eval_batches=1)
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.head_only_steps = 0  # from random weights the whole model trains (the demo probes its policy)
        if objective == "implicit_ce":
            c.loss.beta = 0.5  # random init and reference: see arith_prm.py
    return c


def get_hyper(h):
    """Soft vs hard MC labels (the BCE-PRM ablation of Math-Shepherd)."""
    return h.sweep("data.label_field", ["labels", "hard_labels"])


# against the exact labels (eval_label_field); the losses are not comparable across label fields
SWEEP_METRICS = ("eval/step_auroc", "eval/step_acc")
