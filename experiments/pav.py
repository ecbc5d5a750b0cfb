"""Process advantage verifier (Rewarding Progress, Setlur et al. 2024): predict the prover's Q per step.

The verifier is trained with BCE on the Monte-Carlo Q of a PROVER mu (soft targets, `q` of the labelled
jsonl, V from the bare question in `v0`); A^mu = Q_t - Q_{t-1} is read off consecutive predictions.
Search ranks beams by Q^pi + alpha * A^mu (alpha = 0.5 for 2B/9B bases, 0.2 for 27B in the paper;
`prm-jax search --alpha`, `search.alpha` of the demo config).

The prover is a setting of the labelling job that produced the targets (prm_jax.labeling.prover_q;
`labelling.prover` of the demo config, experiments/arith_mc_label.py): `bok:K`
(Best-of-K of the base policy, analytic 1 - (1 - Q^pi)^K; K = 4 was best), `temperature:T` (the
policy sampled at temperature T), or `policy` (a separate prover checkpoint, `prover_path`).
The training run does not read it.

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

from prm_jax.configs import base

MC_TINY = Path(__file__).resolve().parent / "fixtures" / "mc_labels_tiny.jsonl"  # synthetic, see README
MESHES = {"h100x8": dict(data=1, fsdp=8, tensor=1), "v5p64": dict(data=2, fsdp=16, tensor=1)}  # v5p-64: 32 chips


def get_config(arg=None):
    arg = arg or "h100x8"
    if arg not in (*MESHES, "tiny"):
        raise ValueError(f"pav.py: unknown variant {arg!r}; choose h100x8, v5p64 or tiny")
    tiny = arg == "tiny"
    c = base.get_config()
    c.objective = "pav"
    c.model.update(
        preset="qwen2.5-math-7b",
        dtype="bfloat16",
        remat="full",
        attention_impl="cudnn" if arg == "h100x8" else "xla",
        max_seq_len=2048,
    )
    ckpt = ml_collections.FieldReference(None if tiny else "/path/to/Qwen2.5-Math-7B", field_type=str)
    c.init.hf_path = ckpt
    c.data.update(
        source="stepwise_jsonl",
        path="/path/to/pav_targets.jsonl",
        marker="\n",
        pack=False,  # v0 is per row: no packing for the PAV
        eval_frac=0.05,
    )
    c.data.tokenizer = "char" if tiny else ckpt
    c.optim.update(lr=1e-6, warmup=50, accum_steps=2)
    c.train.update(
        steps=2000,
        batch_size=128,
        seq_len=1024,
        max_steps=32,
        ckpt_every=200,
        eval_every=200,
        eval_batches=8,
        log_every=10,
    )
    c.mesh.shape = MESHES.get(arg, dict(data=-1, fsdp=1, tensor=1))
    if tiny:
        c.model = base.model_section()
        c.model.update(preset="tiny", vocab_size="tokenizer", max_seq_len=256)
        c.data.update(path=str(MC_TINY), marker="<step>")
        c.train.update(
            steps=20, batch_size=4, seq_len=160, max_steps=8, ckpt_every=0, eval_every=20, eval_batches=1, log_every=1
        )
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.update(lr=3e-3, warmup=2, accum_steps=1)
    return c
