"""Math-Shepherd-style BCE PRM: hard vs soft Monte-Carlo step labels (PAPERS.md, Math-Shepherd).

    # the released Math-Shepherd file (`ки` step tags, `+`/`-` = hard MC labels), one 8xH100 node:
    prm-jax train --config experiments/math_shepherd_bce.py:hard --workdir runs/ms_hard \
        --config.init.hf_path=/ckpt/Qwen2.5-Math-7B --config.data.path=/data/math-shepherd.jsonl
    # our own MC labels (prm_jax.labeling output: `labels` = soft fraction, `hard_labels` = any success):
    prm-jax train --config experiments/math_shepherd_bce.py:soft --workdir runs/ms_soft \
        --config.init.hf_path=/ckpt/Qwen2.5-Math-7B --config.data.path=gs://BUCKET/mc_labels.jsonl
    # soft vs hard ablation (2 settings x 3 seeds, then a table and a plot):
    prm-jax sweep --config experiments/math_shepherd_bce.py:soft --workdir runs/ms_sweep --seeds 3
    prm-jax fit-check --config experiments/math_shepherd_bce.py:soft --devices 8 --config.init.hf_path=
    # this CPU (tiny random model, char tokenizer, the Math-Shepherd fixture / synthetic MC labels):
    prm-jax train --config experiments/math_shepherd_bce.py:tiny --workdir /tmp/ms_tiny
    prm-jax sweep --config experiments/math_shepherd_bce.py:tiny_soft --workdir /tmp/ms_sweep --seeds 3

Soft labels stay floats end to end (a 0.625 label is trained as 0.625; PAPERS.md's pitfall of a soft
label cast to int cannot happen: the reader keeps float32). Variants: hard, soft, tiny, tiny_soft.
"""

from pathlib import Path

import ml_collections

from prm_jax.configs import base

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MC_TINY = FIXTURES / "mc_labels_tiny.jsonl"  # synthetic, see README
VARIANTS = ("hard", "soft", "tiny", "tiny_soft")


def get_config(arg=None):
    arg = arg or "soft"
    if arg not in VARIANTS:
        raise ValueError(f"math_shepherd_bce.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    tiny = arg.startswith("tiny")
    soft = arg.endswith("soft")
    c = base.get_config()
    c.objective = "bce"
    c.model.update(preset="qwen2.5-math-7b", dtype="bfloat16", remat="full", attention_impl="cudnn", max_seq_len=2048)
    ckpt = ml_collections.FieldReference(None if tiny else "/path/to/Qwen2.5-Math-7B", field_type=str)
    c.init.hf_path = ckpt
    c.data.update(
        source="stepwise_jsonl" if soft else "math_shepherd",
        path="/path/to/mc_labels.jsonl" if soft else "/path/to/math-shepherd.jsonl",
        label_field="labels",  # soft MC fraction; 'hard_labels' = any rollout succeeded
        # the soft-vs-hard sweep scores both arms on the same held-out labels (the tiny fixture has exact ones)
        eval_label_field=("exact_labels" if tiny else "hard_labels") if soft else None,
        marker="ки",
        pack=True,
        eval_frac=0.05,
    )
    c.data.tokenizer = "char" if tiny else ckpt  # the checkpoint's own tokenizer
    c.optim.update(lr=2e-6, warmup=50, accum_steps=2)
    c.train.update(
        steps=3000,
        batch_size=64,
        seq_len=2048,
        max_steps=48,
        ckpt_every=250,
        eval_every=250,
        eval_batches=8,
        log_every=10,
    )
    c.mesh.shape = dict(data=1, fsdp=8, tensor=1)
    if tiny:
        c.model = base.model_section()
        c.model.update(preset="tiny", vocab_size="tokenizer", max_seq_len=512)
        c.data.update(path=str(MC_TINY if soft else FIXTURES / "math_shepherd.jsonl"), marker="<step>", pack=False)
        c.train.update(
            steps=20, batch_size=2, seq_len=512, max_steps=16, ckpt_every=0, eval_every=20, eval_batches=1, log_every=1
        )
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.update(lr=3e-3, warmup=2, accum_steps=1)
        c.mesh.shape = dict(data=-1, fsdp=1, tensor=1)
    return c


def get_hyper(h):
    """Soft (fraction of successful rollouts) vs hard (any success) MC labels, same data; seeds by
    `prm-jax sweep --seeds K`."""
    return h.sweep("data.label_field", ["labels", "hard_labels"])


# against one reference label field (eval_label_field) for both arms; the losses are not comparable
SWEEP_METRICS = ("eval/step_auroc", "eval/step_acc")
