"""Demo stage 3: the verifiers, trained on the policy's own solutions with Monte-Carlo labels.

    prm-jax train --config experiments/arith_verifier.py:bce,demo --workdir runs/arith/bce
    prm-jax train --config experiments/arith_verifier.py:orm,demo --workdir runs/arith/orm
    prm-jax train --config experiments/arith_verifier.py:pav,demo --workdir runs/arith/pav
    prm-jax train --config experiments/arith_verifier.py:implicit_ce,demo --workdir runs/arith/implicit
    # soft vs hard MC labels for the BCE-PRM (two runs, one table + plot):
    prm-jax sweep --config experiments/arith_verifier.py:bce,demo --workdir runs/arith/soft_vs_hard
    # this CPU, about a minute each (tiny model, synthetic labels experiments/fixtures/mc_labels_tiny.jsonl):
    prm-jax train --config experiments/arith_verifier.py:bce,tiny --workdir /tmp/arith_bce

Argument `OBJECTIVE[,SIZE]`: OBJECTIVE in bce | orm | pav | implicit_ce; SIZE in tiny (default) | demo.
The demo size reads `runs/arith/mc/labels/train.jsonl` (stage 2, experiments/arith_mc_label.py:
`labels` = soft MC fraction, `hard_labels`, `q` / `v0` = the prover's Q for the PAV, `correct`), and the
verifiers start from the SFT policy's weights (`runs/arith/policy`, stage 1), which is also the implicit
PRM's frozen reference. Tiny runs start from random weights unless `--config.init.workdir` is given.
"""

from pathlib import Path

import ml_collections

MC_TINY = Path(__file__).resolve().parent / "fixtures" / "mc_labels_tiny.jsonl"  # synthetic, see README
OBJECTIVES = ("bce", "orm", "pav", "implicit_ce")
SIZES = ("tiny", "demo")


def get_config(arg=None):
    objective, _, size = (arg or "bce,tiny").partition(",")
    size = size or "tiny"
    if objective not in OBJECTIVES or size not in SIZES:
        raise ValueError(
            f"arith_verifier.py: bad variant {arg!r}; use OBJECTIVE[,SIZE], OBJECTIVE in {OBJECTIVES}, SIZE in {SIZES}"
        )
    tiny = size == "tiny"
    implicit = objective == "implicit_ce"
    c = ml_collections.ConfigDict()
    c.objective = objective
    # the demo size matches the policy's shape (arith_policy_sft.py:demo) so init.workdir loads into it
    c.model = ml_collections.ConfigDict(
        dict(preset="tiny", vocab_size=None, max_seq_len=256)
        if tiny
        else dict(
            preset="tiny",
            vocab_size=None,
            d_model=128,
            n_layers=4,
            n_heads=4,
            n_kv_heads=2,
            head_dim=32,
            mlp_dim=384,
            max_seq_len=256,
        )
    )
    c.loss = ml_collections.ConfigDict(dict(beta=0.05, pav_mode="bce", logprob_chunk=1024))
    c.data = ml_collections.ConfigDict(
        dict(
            eval_frac=0.05,  # share of problems held out (by hash) for in-training evaluation; or eval_path=FILE
            source="stepwise_jsonl",
            path=str(MC_TINY) if tiny else "runs/arith/mc/labels/train.jsonl",
            label_field="labels",  # soft MC; 'hard_labels' for hard
            tokenizer="char",
            marker="<step>",
            pack=False,
            pair=False,
            shuffle=True,
            repeat=True,
            skip_bad=False,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-3 if implicit else 3e-3,
            warmup=10,
            decay="cosine",
            final_frac=0.1,
            clip=1.0,
            weight_decay=0.01,
            b1=0.9,
            b2=0.95,
            accum_steps=1,
            head_only_steps=0,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=200,
            batch_size=32,
            seq_len=128,
            max_steps=8,
            seed=0,
            log_every=10,
            ckpt_every=300,
            keep_ckpts=1,
            eval_every=100,
            eval_batches=2,
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(shape=dict(data=-1, fsdp=1, tensor=1), rules=None))
    policy = None if tiny else "runs/arith/policy"
    c.init = ml_collections.ConfigDict(
        dict(hf_path=None, ref_hf_path=None, workdir=policy, ref_workdir=policy if implicit else None)
    )
    if implicit and tiny:
        c.loss.beta = 0.5  # random init and reference: see arith_prm.py
    if tiny:
        c.train.update(steps=20, batch_size=4, log_every=1, ckpt_every=20, eval_every=20, eval_batches=1)
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
    return c


def get_hyper(h):
    """Soft vs hard MC labels (the BCE-PRM ablation of Math-Shepherd)."""
    return h.sweep("data.label_field", ["labels", "hard_labels"])


SWEEP_METRICS = ("eval/loss", "eval/step_auroc", "eval/step_acc")
