"""The public PRM families, each rendered and read as its authors' code does, as `Verifier`s.

A family gives the Verifier its encoder (the whole text tokenized at once with the family's own
tokenizer, as the authors do, and the step positions found the way their code finds them) and its
read-out. Families so far (`FAMILIES`; `detect_family` picks one from a folder where unambiguous):
  * `prm_jax`: prm-jax's score head (`hf.load_checkpoint`: its own head file), rendered by
    `data.tokenize`; `token_classification`: the same read-out of a *ForTokenClassification folder
    (TRL's PRMTrainer format, `prm_jax.hf_heads`);
  * `qwen_prm`: Qwen2.5-Math-PRM's two-class MLP head at each `<extra_0>` in its chat (below);
  * `math_shepherd`: a causal LM read at its step tag (below);
  * `rlhflow`: a causal LM asked for `+` / `-` after every step in a multi-turn chat (below);
  * `skywork`: a value head (`v_head.summary`) read through a sigmoid at each step's newline (below);
  * `implicit`: EurusPRM and any implicit PRM, q_t = beta * log pi / pi_ref summed up to step t's end
    against a reference checkpoint folder (below).
A solution whose step positions the authors' code would miscount (a tag merged with its neighbours
by the tokenizer, or one inside the text) is an error naming it, never a silently shifted score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from prm_jax.verifier import Verifier

FAMILIES = ("prm_jax", "token_classification", "qwen_prm", "math_shepherd", "rlhflow", "skywork", "implicit")
EURUS_BETA = 0.001  # the EurusPRM model cards' `coef`


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


def _verifier(kind: str, family, model_cfg, params, *, name: str, marker: str, **kwargs) -> Verifier:
    """Returns a Verifier of `kind` that renders with `family.encode` and its transformers tokenizer."""
    from prm_jax.data.tokenizers import HFTokenizer

    kwargs.setdefault("name", name)
    return Verifier(
        kind, model_cfg, params, HFTokenizer(family.tokenizer), marker=marker, encoder=family.encode, **kwargs
    )


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
        return _verifier(
            "lm_pair", self, model_cfg, params, name="math_shepherd", marker=self.tag, pair=self.pair, **kwargs
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
        return _verifier("mlp_head", self, model_cfg, params, name="qwen_prm", marker=self.sep, head=head, **kwargs)


class RLHFlow:
    """RLHFlow/Llama3.1-8B-PRM-Mistral-Data and -Deepseek-Data (Xiong et al. 2024, "An Implementation of
    Generative PRM"), as their evaluation code scores a solution step by step.

    Source: RLHFlow/RLHF-Reward-Modeling, math-rm (the step-wise reward function): user turn k holds
    step k (the first one `question + " " + step 0`), each followed by an assistant turn "+"; for step
    k the chat of turns 0..k goes through the tokenizer's chat template, and P(step correct) =
    softmax(logits[-3, [plus, minus]])[0] with plus / minus = `tokenizer.encode("+" / "-")[-1]`: the
    position that predicts the last assistant turn's "+" (Llama 3.1's "+<|eot_id|>" ends it). Those
    k + 1 chats are prefixes of the whole chat, so one causal pass over it gives every step's logits
    at the same positions; a template whose rendering of a shorter chat is not a prefix is an error.
    """

    good, bad = "+", "-"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("rlhflow: the tokenizer has no chat template (tokenizer_config.json)")
        self.pair = (int(tokenizer.encode(self.good)[-1]), int(tokenizer.encode(self.bad)[-1]))

    def _chat(self, problem: str, steps: Sequence[str]) -> list[dict]:
        conv = []
        for k, step in enumerate(steps):
            conv.append({"role": "user", "content": f"{problem} {step}" if k == 0 else step})
            conv.append({"role": "assistant", "content": self.good})
        return conv

    def _ids(self, conv: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conv, tokenize=False)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution: the whole chat, each step read at its chat's [-3]."""
        conv = self._chat(problem, steps)
        ids = self._ids(conv) if steps else self._ids([{"role": "user", "content": problem}])
        pos = []
        for k in range(len(steps)):
            part = self._ids(conv[: 2 * k + 2])
            if ids[: len(part)] != part:
                raise ValueError(
                    f"rlhflow: the chat template renders the first {k + 1} steps as other tokens than "
                    "the start of the whole chat; the one-pass read-out would differ from the authors'"
                )
            pos.append(len(part) - 3)
        return example_from_ids(ids, pos, pos[0] if pos else len(ids))

    def verifier(self, model_cfg, params, **kwargs) -> Verifier:
        """Returns the 'lm_pair' Verifier of this family's model."""
        return _verifier("lm_pair", self, model_cfg, params, name="rlhflow", marker=self.good, pair=self.pair, **kwargs)


class Skywork:
    """Skywork-o1-Open-PRM-Qwen-2.5-1.5B / -7B (Skywork o1 Open series), as their inference code scores.

    Source: SkyworkAI/skywork-o1-prm-inference (`prepare_input`, `PRM_MODEL`): the input is
    `encode(bos_token + problem + "\\n")` followed, for every step of the response split at the step
    token "\\n", by `encode(step)` (nothing for an empty step) and the step token's id
    (`encode("\\n")[-1]`), whose position is flagged; the model is the causal LM plus a value head
    `v_head.summary` = Linear(h, 1) on the last hidden states, and a step's reward is
    sigmoid(value) at its flag (`return_probs=True`). That head is prm-jax's own score head (a
    linear read-out through a sigmoid), so the Verifier is kind 'score' with this rendering. A step
    holding the step token itself would be split by their code: an error here. A missing bos_token
    counts as "".
    """

    step_token = "\n"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.step_id = int(tokenizer.encode(self.step_token)[-1])

    def encode(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution; raises if a step holds the step token."""
        bad = [i for i, st in enumerate(steps) if self.step_token in st]
        if bad:
            raise ValueError(
                f"skywork: step {bad[0]} holds the step token {self.step_token!r}; the authors' code would "
                "split it into more steps"
            )
        ids = list(self.tokenizer.encode((self.tokenizer.bos_token or "") + problem + self.step_token))
        prompt_len, pos = len(ids), []
        for st in steps:
            ids += (list(self.tokenizer.encode(st)) if st else []) + [self.step_id]
            pos.append(len(ids) - 1)
        return example_from_ids(ids, pos, prompt_len)

    @staticmethod
    def read_head(path: str) -> dict:
        """Returns prm-jax's score head {kernel [D, 1], bias [1]} from the checkpoint's `v_head.summary`."""
        from prm_jax import hf

        folder = hf._SafetensorsFolder(path)
        w, b = folder.get("v_head.summary.weight"), folder.get("v_head.summary.bias")
        if w.ndim != 2 or w.shape[0] != 1 or b.shape != (1,):
            raise ValueError(f"{path}: v_head.summary shapes {w.shape}, {b.shape}; expected [1, D] and [1]")
        return {"kernel": np.asarray(w, np.float32).T, "bias": np.asarray(b, np.float32)}

    def verifier(self, model_cfg, params, head: dict, **kwargs) -> Verifier:
        """Returns the 'score' Verifier of this family's model (its value head as the score head)."""
        cfg = model_cfg.replace(score_head=True, score_likelihood=False)
        return _verifier(
            "score", self, cfg, dict(params, score_head=head), name="skywork", marker=self.step_token, **kwargs
        )


class EurusImplicit:
    """EurusPRM-Stage1 / -Stage2 (Cui et al. 2025, "Process Reinforcement through Implicit Rewards";
    Yuan et al. 2024, "Free Process Rewards without Process Labels"), as their model cards score.

    Source: the EurusPRM-Stage2 model card's example: the chat of the question (user) and the steps
    joined by "\\n\\n" (assistant), `add_generation_prompt=False`; step ends
    `s_k = len(encode(chat(steps[:k]).strip() + ("\\n\\n" if 0 < k < T else ""))) - 2` for
    k = 0..T; per-token log-ratios log pi(y_j) - log pi_ref(y_j) of the model against the reference
    (Qwen2.5-Math-7B-Instruct for EurusPRM), masked to tokens from s_0 on, times coef = 0.001,
    cumulated, and read at s_1 .. s_T (of the shifted sequence): q_k = beta * the sum of the log-ratios of tokens
    s_0 .. s_k + 1. As a Verifier (kind 'implicit') step k holds tokens s_{k-1} + 2 .. s_k + 1 (the
    first from s_0), so its q_t is that q_k; `probs` are sigmoid(q_t).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("implicit: the tokenizer has no chat template (tokenizer_config.json)")

    def _render(self, problem: str, steps: Sequence[str]) -> str:
        chat = [{"role": "user", "content": problem}, {"role": "assistant", "content": "\n\n".join(steps)}]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)

    def encode(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution, steps ending where the authors read them."""
        enc = lambda text: list(self.tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
        ids, T = enc(self._render(problem, steps)), len(steps)
        ends = []
        for k in range(T + 1):
            conv = self._render(problem, steps[:k]).strip() + ("\n\n" if 0 < k < T else "")
            ends.append(len(enc(conv)) - 2)
        return example_from_ids(ids, [e + 1 for e in ends[1:]], ends[0])

    def verifier(self, model_cfg, params, ref_params, beta: float, **kwargs) -> Verifier:
        """Returns the 'implicit' Verifier of this model against its reference."""
        return _verifier(
            "implicit",
            self,
            model_cfg,
            params,
            name="implicit",
            marker="\n\n",
            ref_params=ref_params,
            beta=beta,
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
    if "v_head.summary.weight" in hf._SafetensorsFolder(path).where:
        return "skywork"
    raise ValueError(
        f"{path}: cannot tell its PRM head (a causal LM without {hf_heads.SCORE_HEAD_FILE}: a generative PRM "
        f"reads its LM head); give --head, one of {', '.join(FAMILIES)}"
    )


def load_verifier(
    family: str, path: str, *, ref: str | None = None, beta: float | None = None, shardings=None, **kwargs
) -> Verifier:
    """Returns the Verifier of a public PRM folder (config.json, safetensors, tokenizer) read as
    `family` ('auto': `detect_family`). An implicit PRM also needs `ref`, its reference model's
    folder; its beta defaults to EurusPRM's (EURUS_BETA). `shardings` (a params-shaped pytree or a
    function of the ModelConfig, as `hf.load_checkpoint` takes) places the decoder, and the
    reference, tensor by tensor, for 7B-72B checkpoints; a family's own small head is replicated."""
    from prm_jax import hf

    if family == "auto":
        family = detect_family(path)
    if family not in FAMILIES:
        raise ValueError(f"unknown PRM family {family!r}; choose one of auto, {', '.join(FAMILIES)}")
    if family in ("prm_jax", "token_classification"):
        from prm_jax.verifier import load_verifier as load_prm_jax

        return load_prm_jax("score", hf_dir=path, shardings=shardings, **kwargs)
    if (ref is not None or beta is not None) and family != "implicit":
        raise ValueError(f"a reference model and beta are settings of an implicit PRM, not of --head {family}")
    cfg, params = hf.load_checkpoint(path, score_head=False, shardings=shardings)
    tok = hf.load_tokenizer(path)
    if family == "implicit":
        if ref is None:
            raise ValueError(f"{path}: an implicit PRM needs its reference model's folder (--ref-checkpoint)")
        ref_cfg, ref_params = hf.load_checkpoint(ref, score_head=False, shardings=shardings)
        if ref_cfg.replace(max_seq_len=cfg.max_seq_len) != cfg:
            raise ValueError(f"{ref}: the reference's architecture differs from the PRM's ({path})")
        b = EURUS_BETA if beta is None else float(beta)
        return EurusImplicit(tok).verifier(cfg, params, ref_params, b, **kwargs)
    if family == "qwen_prm":
        return QwenPRM(tok).verifier(cfg, params, QwenPRM.read_head(path), **kwargs)
    if family == "rlhflow":
        return RLHFlow(tok).verifier(cfg, params, **kwargs)
    if family == "skywork":
        return Skywork(tok).verifier(cfg, params, Skywork.read_head(path), **kwargs)
    return MathShepherd(tok).verifier(cfg, params, **kwargs)
