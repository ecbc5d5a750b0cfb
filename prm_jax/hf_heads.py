"""Score heads of Hugging Face folders: prm-jax's own head file, and the token-classification form.

* `prm_jax` (what `hf.save_checkpoint` writes by default): a causal-LM folder plus `score_head.safetensors`
  (`score_head.weight` [1, D], `score_head.bias` [1], as a torch Linear(D, 1) stores them, and
  `score_head.likelihood` [2] when config.json says `prm_jax_score_likelihood`).
* `token_classification`: `{Llama,Qwen2,Mistral}ForTokenClassification`, the form TRL's PRMTrainer
  trains and `transformers.AutoModelForTokenClassification` loads with no custom code: the decoder
  (`model.*`, no LM head) and `score.weight` [num_labels, D] (+ `score.bias`). With num_labels = 1 the
  step probability is sigmoid(logit); with 2 it is softmax(logits)[1] = sigmoid(z_1 - z_0), so a
  prm-jax head (one logit z) is written as the rows (0, z) and read back as z_1 - z_0, both exactly.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

log = logging.getLogger(__name__)

SCORE_HEAD_FILE = "score_head.safetensors"
# config.json key of ModelConfig.score_likelihood; its weights are `score_head.likelihood` [2] in SCORE_HEAD_FILE
LIKELIHOOD_KEY = "prm_jax_score_likelihood"
HEADS = ("prm_jax", "token_classification")
TOKEN_CLASSIFICATION = {
    "llama": "LlamaForTokenClassification",
    "qwen2": "Qwen2ForTokenClassification",
    "mistral": "MistralForTokenClassification",
}


def _check(got: np.ndarray, want: tuple, name: str, where: str) -> None:
    if tuple(got.shape) != tuple(want):
        raise ValueError(f"tensor {name!r} in {where} has shape {tuple(got.shape)}, config implies {tuple(want)}")


# Qwen2.5-Math-PRM's architecture: the Qwen2 decoder and a two-layer `score` MLP (prm_jax.heads.QwenPRM)
PROCESS_REWARD = {"qwen2": "Qwen2ForProcessRewardModel"}


def is_process_reward(hf_cfg: dict) -> bool:
    """Returns whether a parsed config.json describes a *ForProcessRewardModel (Qwen2.5-Math-PRM)."""
    return any(a in PROCESS_REWARD.values() for a in hf_cfg.get("architectures") or [])


def is_token_classification(hf_cfg: dict) -> bool:
    """Returns whether a parsed config.json describes a *ForTokenClassification model."""
    return any(a in TOKEN_CLASSIFICATION.values() for a in hf_cfg.get("architectures") or [])


def load_prm_jax_head(path: str, cfg, pdt) -> dict:
    """Returns the score head params {kernel [D, 1], bias [1] (, likelihood [2])} from SCORE_HEAD_FILE
    (zeros, with a warning, when the folder has none: a plain causal LM)."""
    fname = os.path.join(path, SCORE_HEAD_FILE)
    if not os.path.isfile(fname):
        log.warning("%s not found: the score head starts at zeros (score = 0 for every token)", fname)
        out = dict(kernel=np.zeros((cfg.d_model, 1), pdt), bias=np.zeros((1,), pdt))
        if cfg.score_likelihood:
            out["likelihood"] = np.asarray([1.0, 0.0], pdt)  # the model's own initial value
        return out
    from safetensors import safe_open

    names = ("score_head.weight", "score_head.bias") + (("score_head.likelihood",) if cfg.score_likelihood else ())
    with safe_open(fname, "numpy") as f:
        keys = set(f.keys())
        for k in names:
            if k not in keys:
                raise KeyError(f"tensor {k!r} missing from {fname}")
        w, b = f.get_tensor("score_head.weight"), f.get_tensor("score_head.bias")
        lik = f.get_tensor("score_head.likelihood") if cfg.score_likelihood else None
    _check(w, (1, cfg.d_model), "score_head.weight", fname)
    _check(b, (1,), "score_head.bias", fname)
    out = dict(kernel=np.asarray(w.T, pdt), bias=np.asarray(b, pdt))
    if lik is not None:
        _check(lik, (2,), "score_head.likelihood", fname)
        out["likelihood"] = np.asarray(lik, pdt)
    return out


def prm_jax_head_tensors(cfg, params, dt) -> dict:
    """Returns SCORE_HEAD_FILE's tensors for params' score head."""
    head = params["score_head"]
    out = {
        "score_head.weight": np.ascontiguousarray(np.asarray(jax.device_get(head["kernel"])).T.astype(dt)),
        "score_head.bias": np.asarray(jax.device_get(head["bias"])).astype(dt),
    }
    if cfg.score_likelihood:
        out["score_head.likelihood"] = np.asarray(jax.device_get(head["likelihood"])).astype(dt)
    return out


def read_token_classification_head(get, hf_cfg: dict, cfg, pdt, where: str) -> dict:
    """Returns the score head params {kernel [D, 1], bias [1]} of a token-classification folder.

    get(name) reads one tensor; num_labels 1 -> (w, b); 2 -> (w_1 - w_0, b_1 - b_0).
    """
    n = int(hf_cfg.get("num_labels") or len(hf_cfg.get("id2label") or {}) or 2)
    if n not in (1, 2):
        raise ValueError(f"{where}: a token-classification PRM has num_labels 1 or 2, got {n}")
    w = get("score.weight")
    _check(w, (n, cfg.d_model), "score.weight", where)
    b = get("score.bias") if hf_cfg.get("token_classification_bias", True) else np.zeros((n,), w.dtype)
    _check(b, (n,), "score.bias", where)
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    if n == 2:
        w, b = w[1:] - w[:1], b[1:] - b[:1]
    return dict(kernel=np.asarray(w.T, pdt), bias=np.asarray(b, pdt))


def token_classification_tensors(cfg, params, num_labels: int, dt) -> dict:
    """Returns `score.weight` [num_labels, D] and `score.bias` [num_labels] for params' score head."""
    if num_labels not in (1, 2):
        raise ValueError(f"num_labels must be 1 or 2, got {num_labels}")
    if cfg.score_likelihood:
        raise ValueError(
            "a score head with likelihood features (model.score_likelihood) has no token-classification "
            "form: its step logit also reads the LM's log-probs; export it with head='prm_jax'"
        )
    head = params["score_head"]
    w = np.asarray(jax.device_get(head["kernel"]), np.float64).T  # [1, D]
    b = np.asarray(jax.device_get(head["bias"]), np.float64)
    if num_labels == 2:
        w, b = np.concatenate([np.zeros_like(w), w]), np.concatenate([np.zeros_like(b), b])
    return {"score.weight": np.ascontiguousarray(w.astype(dt)), "score.bias": b.astype(dt)}


def token_classification_config(hf_cfg: dict, family: str, num_labels: int) -> dict:
    """Returns config.json of the token-classification form of a causal-LM config.json dict."""
    labels = {0: "step_score"} if num_labels == 1 else {0: "negative", 1: "positive"}
    out = dict(hf_cfg, architectures=[TOKEN_CLASSIFICATION[family]], num_labels=num_labels)
    out.update(id2label={str(k): v for k, v in labels.items()}, label2id={v: k for k, v in labels.items()})
    out.update(classifier_dropout=0.0, token_classification_bias=True)
    return out
