"""`prm-jax export RUN OUT`: a training run's latest params as a Hugging Face folder.

`--head prm_jax` (default): a causal-LM folder plus prm-jax's `score_head.safetensors`, which prm-jax
reads back exactly. `--head token_classification`: `{Llama,Qwen2,Mistral}ForTokenClassification`
(`--num-labels 1` or `2`, as TRL's PRMTrainer trains), which
`transformers.AutoModelForTokenClassification.from_pretrained(OUT)` loads with no custom code; its
step score is sigmoid(logit) (1 label) or softmax(logits)[1] (2 labels) at each step marker.
"""

from __future__ import annotations

import argparse
import json
import os

from prm_jax import hf_heads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a training run folder (prm-jax train --workdir)")
    parser.add_argument("out", help="the Hugging Face folder to write")
    parser.add_argument(
        "--head", choices=hf_heads.HEADS, default="prm_jax", help="the score head's form (default: prm_jax)"
    )
    parser.add_argument(
        "--num-labels", type=int, choices=(1, 2), default=1, help="token_classification: logits per token (default: 1)"
    )


def run(args: argparse.Namespace) -> int:
    from prm_jax import loop

    if not os.path.isdir(args.run):
        raise FileNotFoundError(f"run folder not found: {args.run}")
    loop.export_hf(args.run, args.out, head=args.head, num_labels=args.num_labels)
    print(json.dumps({"out": args.out, "head": args.head, "num_labels": args.num_labels}))
    return 0
