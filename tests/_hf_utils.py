"""Shared test helpers for test_model.py and test_hf.py (no jit compile needed to make parameters)."""

import jax
import numpy as np

from prm_jax import model as M


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
