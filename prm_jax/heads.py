"""The public PRM families, each rendered and read as its authors' code does, as `Verifier`s.

A family gives the Verifier its encoder (the whole text tokenized at once with the family's own
tokenizer, as the authors do, and the step positions found the way their code finds them) and its
read-out. Families so far (`FAMILIES`):
  * `prm_jax`: prm-jax's score head (`hf.load_checkpoint`: its own head file, or a token-classification
    folder, `prm_jax.hf_heads`), rendered by `data.tokenize`;
  * `math_shepherd`: a causal LM read at its step tag (below).
A solution whose step positions the authors' code would miscount (a tag merged with its neighbours
by the tokenizer, or one inside the text) is an error naming it, never a silently shifted score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prm_jax.verifier import Verifier

FAMILIES = ("prm_jax", "math_shepherd")


def example_from_ids(ids: Sequence[int], step_pos: Sequence[int], prompt_len: int) -> dict:
    """Returns the example dict a Verifier pads and scores, from whole-text ids and step positions.

    Tokens after step t-1's position up to step t's belong to step t (the first step starts at
    prompt_len); the rest are prompt (step id -1).
    """
    n, pos = len(ids), [int(p) for p in step_pos]
    step_ids = np.full(n, -1, np.int32)
    start = min(prompt_len, pos[0]) if pos else n
    for t, p in enumerate(pos):
        step_ids[start : p + 1] = t
        start = p + 1
    T = len(pos)
    return {
        "tokens": np.asarray(ids, np.int32),
        "segment_ids": np.ones(n, np.int32),
        "positions": np.arange(n, dtype=np.int32),
        "step_ids": step_ids,
        "response_mask": step_ids >= 0,
        "step_pos": np.asarray(pos, np.int32),
        "step_labels": np.zeros(T, np.float32),
        "step_mask": np.ones(T, bool),
        "step_segment": np.ones(T, np.int32),
        "outcome": np.float32(0.0),
        "outcome_mask": np.bool_(False),
        "dropped_steps": np.int32(0),
    }


class MathShepherd:
    """math-shepherd-mistral-7b-prm (Wang et al. 2024, "Math-Shepherd"), as its model card scores it.

    Source: the model card of peiyi9979/math-shepherd-mistral-7b-prm, whose example code this follows:
    input `f"{question} {output}"` with `output` the steps joined by "\\n", each ending in " ки" (their
    data's steps carry their own "Step k: " prefixes; the steps are used as given);
    `candidate_tokens = tokenizer.encode("+ -")[1:]` (good, bad), `step_tag_id =
    tokenizer.encode("ки")[-1]`; P(step correct) = softmax(logits[..., candidate_tokens])[..., 0] at
    every position whose id is the step tag. `tokenizer` is the family's transformers tokenizer.
    """

    tag, good, bad = "ки", "+", "-"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        pair = tokenizer.encode(f"{self.good} {self.bad}")[1:]
        if len(pair) != 2:
            raise ValueError(f"math_shepherd: '+ -' encodes to {len(pair)} tokens after BOS, expected 2")
        self.pair = (int(pair[0]), int(pair[1]))
        self.tag_id = int(tokenizer.encode(self.tag)[-1])

    def text(self, problem: str, steps: Sequence[str]) -> str:
        """Returns the authors' input text for one solution."""
        return f"{problem} " + "\n".join(f"{s} {self.tag}" for s in steps)

    def encode(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution; raises if the step tags found are not one per step."""
        ids = self.tokenizer.encode(self.text(problem, steps))
        pos = [i for i, t in enumerate(ids) if t == self.tag_id]
        if len(pos) != len(steps):
            raise ValueError(
                f"math_shepherd: the step tag {self.tag!r} (id {self.tag_id}) is at {len(pos)} positions of "
                f"a {len(steps)}-step solution (merged with its neighbours by the tokenizer, or present in "
                f"the problem or a step): {self.text(problem, steps)[:120]!r}"
            )
        prompt_len = len(self.tokenizer.encode(f"{problem} "))
        return example_from_ids(ids, pos, prompt_len)

    def verifier(self, model_cfg, params, **kwargs) -> Verifier:
        """Returns the 'lm_pair' Verifier of this family's model."""
        from prm_jax.data.tokenizers import HFTokenizer

        return Verifier(
            "lm_pair",
            model_cfg,
            params,
            HFTokenizer(self.tokenizer),
            marker=self.tag,
            encoder=self.encode,
            pair=self.pair,
            name=kwargs.pop("name", "math_shepherd"),
            **kwargs,
        )


def load_verifier(family: str, path: str, **kwargs) -> Verifier:
    """Returns the Verifier of a public PRM folder (config.json, safetensors, tokenizer) read as `family`."""
    from prm_jax import hf

    if family not in FAMILIES:
        raise ValueError(f"unknown PRM family {family!r}; choose one of {FAMILIES}")
    if family == "prm_jax":
        from prm_jax.verifier import load_verifier as load_prm_jax

        return load_prm_jax("score", hf_dir=path, **kwargs)
    cfg, params = hf.load_checkpoint(path, score_head=False)
    return MathShepherd(hf.load_tokenizer(path)).verifier(cfg, params, **kwargs)
