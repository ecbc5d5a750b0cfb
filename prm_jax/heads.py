"""The public PRM families, each rendered and read as its authors' code does, as `Verifier`s.

A family gives the Verifier its encoder (the whole text tokenized at once with the family's own
tokenizer, as the authors do, and the step positions found the way their code finds them) and its
read-out. Families so far (`FAMILIES`; `detect_family` picks one from a folder where unambiguous):
  * `prm_jax`: prm-jax's score head (`hf.load_checkpoint`: its own head file), rendered by
    `data.tokenize`; `token_classification`: the same read-out of a *ForTokenClassification folder
    (TRL's PRMTrainer format, `prm_jax.hf_heads`);
  * `qwen_prm`: Qwen2.5-Math-PRM's two-class MLP head at each `<extra_0>` in its chat (below);
  * `math_shepherd`: a causal LM read at its step tag (below).
A solution whose step positions the authors' code would miscount (a tag merged with its neighbours
by the tokenizer, or one inside the text) is an error naming it, never a silently shifted score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prm_jax.verifier import Verifier

FAMILIES = ("prm_jax", "token_classification", "qwen_prm", "math_shepherd")


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


class QwenPRM:
    """Qwen2.5-Math-PRM-7B / -72B and Qwen2.5-Math-7B-PRM800K (Zhang et al. 2025, "The Lessons of
    Developing Process Reward Models"), as their model cards score them.

    Source: the model cards' example code (Qwen/Qwen2.5-Math-PRM-7B) and the `Qwen2ForProcessRewardModel`
    definition their checkpoints name (`score` = Linear(h, h) -> ReLU -> Linear(h, 2), tensors
    `score.0.*`, `score.2.*`, no LM head). Input: the tokenizer's chat template over a system turn
    SYSTEM, the question as the user turn and the steps joined by `<extra_0>`, with a final
    `<extra_0>`, as the assistant turn (`add_generation_prompt=False`), encoded as one string; the
    separator id is `tokenizer.encode("<extra_0>")[0]`; P(step correct) = softmax(score(h))[1] at
    every position holding it. The model cards split Qwen2.5-Math-Instruct responses into steps at
    blank lines; the steps here are used as given. ProcessBench reads the first step under 0.5.
    """

    SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
    sep = "<extra_0>"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("qwen_prm: the tokenizer has no chat template (tokenizer_config.json)")
        ids = tokenizer.encode(self.sep, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"qwen_prm: {self.sep!r} is {len(ids)} tokens in this tokenizer, expected one")
        self.sep_id = int(ids[0])

    def _messages(self, problem: str, steps: Sequence[str]) -> list[dict]:
        return [
            {"role": "system", "content": self.SYSTEM},
            {"role": "user", "content": problem},
            # a solution with no step (an empty sample) has no separator and no score
            {"role": "assistant", "content": self.sep.join(steps) + self.sep if steps else ""},
        ]

    def text(self, problem: str, steps: Sequence[str]) -> str:
        """Returns the authors' input text for one solution."""
        return self.tokenizer.apply_chat_template(
            self._messages(problem, steps), tokenize=False, add_generation_prompt=False
        )

    def encode(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution; raises if the separators found are not one per step."""
        ids = self.tokenizer.encode(self.text(problem, steps), add_special_tokens=False)
        pos = [i for i, t in enumerate(ids) if t == self.sep_id]
        if len(pos) != len(steps):
            raise ValueError(
                f"qwen_prm: {self.sep!r} is at {len(pos)} positions of a {len(steps)}-step solution "
                f"(present in the problem or a step): {problem[:80]!r}"
            )
        head = self.tokenizer.apply_chat_template(
            self._messages(problem, steps)[:2], tokenize=False, add_generation_prompt=True
        )
        return example_from_ids(ids, pos, len(self.tokenizer.encode(head, add_special_tokens=False)))

    @staticmethod
    def read_head(path: str) -> dict:
        """Returns {w1 [D, D], b1 [D], w2 [D, 2], b2 [2]} float32 from the checkpoint's `score` tensors."""
        from prm_jax import hf

        folder = hf._SafetensorsFolder(path)
        w1, b1 = folder.get("score.0.weight"), folder.get("score.0.bias")
        w2, b2 = folder.get("score.2.weight"), folder.get("score.2.bias")
        if w2.shape[0] != 2 or w1.shape != (w2.shape[1], w2.shape[1]):
            raise ValueError(f"{path}: score head shapes {w1.shape}, {w2.shape}; expected [D, D] and [2, D]")
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        return {"w1": f32(w1).T, "b1": f32(b1), "w2": f32(w2).T, "b2": f32(b2)}

    def verifier(self, model_cfg, params, head: dict, **kwargs) -> Verifier:
        """Returns the 'mlp_head' Verifier of this family's model."""
        from prm_jax.data.tokenizers import HFTokenizer

        return Verifier(
            "mlp_head",
            model_cfg,
            params,
            HFTokenizer(self.tokenizer),
            marker=self.sep,
            encoder=self.encode,
            head=head,
            name=kwargs.pop("name", "qwen_prm"),
            **kwargs,
        )


def detect_family(path: str) -> str:
    """Returns the family of an HF folder from its config.json and files, or raises listing the choices."""
    import os

    from prm_jax import hf, hf_heads

    hf_cfg = hf._config_json(path)
    if hf_heads.is_process_reward(hf_cfg):
        return "qwen_prm"
    if hf_heads.is_token_classification(hf_cfg):
        return "token_classification"
    if os.path.exists(os.path.join(path, hf_heads.SCORE_HEAD_FILE)):
        return "prm_jax"
    raise ValueError(
        f"{path}: cannot tell its PRM head (a causal LM without {hf_heads.SCORE_HEAD_FILE}: a generative PRM "
        f"reads its LM head); give --head, one of {', '.join(FAMILIES)}"
    )


def load_verifier(family: str, path: str, **kwargs) -> Verifier:
    """Returns the Verifier of a public PRM folder (config.json, safetensors, tokenizer) read as
    `family` ('auto': `detect_family`)."""
    from prm_jax import hf

    if family == "auto":
        family = detect_family(path)
    if family not in FAMILIES:
        raise ValueError(f"unknown PRM family {family!r}; choose one of auto, {', '.join(FAMILIES)}")
    if family in ("prm_jax", "token_classification"):
        from prm_jax.verifier import load_verifier as load_prm_jax

        return load_prm_jax("score", hf_dir=path, **kwargs)
    cfg, params = hf.load_checkpoint(path, score_head=False)
    tok = hf.load_tokenizer(path)
    if family == "qwen_prm":
        return QwenPRM(tok).verifier(cfg, params, QwenPRM.read_head(path), **kwargs)
    return MathShepherd(tok).verifier(cfg, params, **kwargs)
