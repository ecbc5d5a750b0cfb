"""Shared test helpers for the model and HF tests (no jit compile needed to make parameters)."""

import jax
import numpy as np

from prm_jax import model as M

# The tiny transformers config the HF tests build their random torch models from.
TINY_HF = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=64,
)


def random_params(cfg: M.ModelConfig, seed: int = 0, std: float = 0.1):
    """Returns numpy params shaped like M.abstract_params(cfg): N(0, std), norm scales 1 + N(0, std).

    Every entry (biases and norm scales included) is random, so a wrong layout or mapping cannot hide.
    """
    rng = np.random.default_rng(seed)

    def make(path, x):
        v = rng.normal(size=x.shape) * std
        if any(getattr(k, "key", None) == "scale" for k in path):
            v = v + 1.0
        return v.astype(x.dtype)

    return jax.tree_util.tree_map_with_path(make, M.abstract_params(cfg))
