"""Process advantage verifier (Rewarding Progress, Setlur et al. 2024): predict the prover's Q per step.

The verifier is trained with BCE on the Monte-Carlo Q of a PROVER mu (soft targets, `q` of the labelled
jsonl, V from the bare question in `v0`); A^mu = Q_t - Q_{t-1} is read off consecutive predictions.
Search ranks beams by Q^pi + alpha * A^mu (alpha = 0.5 for 2B/9B bases, 0.2 for 27B in the paper).

`prover` is the labelling setting that produced the targets (prm_jax.labeling.prover_q): `bok:K`
(Best-of-K of the base policy, analytic 1 - (1 - Q^pi)^K; K = 4 was best), `temperature:T` (the
policy sampled at temperature T), or `policy` (a separate prover checkpoint, `prover_path`).
The training run only records it; `experiments/arith_mc_label.py` / your labelling job applies it.

    # one 8xH100 node, Qwen2.5-Math-7B base, targets from the bok:4 prover:
    prm-jax train --config experiments/pav.py:h100x8 --workdir runs/pav \
        --config.init.hf_path=/ckpt/Qwen2.5-Math-7B --config.data.path=/data/pav_bok4.jsonl
    prm-jax fit-check --config experiments/pav.py:v5p64 --devices 32 --config.init.hf_path=
    # this CPU (tiny random model, synthetic Q targets):
    prm-jax train --config experiments/pav.py:tiny --workdir /tmp/pav_tiny
    # alpha and prover-temperature ablations run the search / labelling stages on the arithmetic task:
    prm-jax sweep --config experiments/arith_search.py:pav_alpha --workdir runs/alpha
    prm-jax sweep --config experiments/arith_mc_label.py:prover_temp --workdir runs/prover_t

Variants: h100x8 (default), v5p64, tiny. Steps are split on newlines as in the paper.
"""

from pathlib import Path

import ml_collections

MC_TINY = Path(__file__).resolve().parent / "fixtures" / "mc_labels_tiny.jsonl"  # synthetic, see README
MESHES = {"h100x8": dict(data=1, fsdp=8, tensor=1), "v5p64": dict(data=2, fsdp=16, tensor=1)}  # v5p-64: 32 chips


def get_config(arg=None):
    arg = arg or "h100x8"
    if arg not in (*MESHES, "tiny"):
        raise ValueError(f"pav.py: unknown variant {arg!r}; choose h100x8, v5p64 or tiny")
    tiny = arg == "tiny"
    c = ml_collections.ConfigDict()
    c.objective = "pav"
    c.prover = "bok:4"  # label-time setting, recorded with the run
    c.prover_path = None
    c.search = ml_collections.ConfigDict(dict(alpha=0.5, n_beams=4, width=3))
    c.model = ml_collections.ConfigDict(
        dict(
            preset="qwen2.5-math-7b",
            dtype="bfloat16",
            param_dtype="float32",
            remat="full",
            scan_layers=True,
            n_layers=None,
            attention_impl="cudnn" if arg == "h100x8" else "xla",
            max_seq_len=2048,
            score_head=True,
        )
    )
    ckpt = ml_collections.FieldReference(None if tiny else "/path/to/Qwen2.5-Math-7B", field_type=str)
    c.init = ml_collections.ConfigDict(dict(hf_path=ckpt, workdir=None))
    c.loss = ml_collections.ConfigDict(dict(pav_mode="bce", logprob_chunk=1024))
    c.data = ml_collections.ConfigDict(
        dict(
            eval_frac=0.05,  # share of problems held out (by hash) for in-training evaluation; or eval_path=FILE
            source="stepwise_jsonl",
            path="/path/to/pav_targets.jsonl",
            format=None,
            split="train",
            label_field="labels",
            tokenizer="char" if tiny else ckpt,
            marker="\n",
            chat_template=None,
            pack=False,  # v0 is per row: no packing for the PAV
            shuffle=True,
            repeat=True,
            skip_bad=False,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-6,
            warmup=50,
            decay="cosine",
            final_frac=0.1,
            clip=1.0,
            weight_decay=0.0,
            b1=0.9,
            b2=0.95,
            accum_steps=2,
            head_only_steps=0,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=2000,
            batch_size=128,
            seq_len=1024,
            max_steps=32,
            seed=0,
            ckpt_every=200,
            keep_ckpts=3,
            eval_every=200,
            eval_batches=8,
            log_every=10,
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(shape=MESHES.get(arg, dict(data=-1)), rules=None))
    if tiny:
        c.model = ml_collections.ConfigDict(dict(preset="tiny", vocab_size=None, max_seq_len=256))
        c.data.path = str(MC_TINY)
        c.data.marker = "<step>"
        c.train.update(
            steps=20, batch_size=4, seq_len=160, max_steps=8, ckpt_every=0, eval_every=20, eval_batches=1, log_every=1
        )
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.update(lr=3e-3, warmup=2, accum_steps=1)
    return c
