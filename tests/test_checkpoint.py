"""Checkpoints for inference: the parameters alone come back (an Orbax partial restore), bit-equal to a
full restore's, and the optimizer's moments are never read."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prm_jax import loop, sharding, train
from prm_jax.checkpoint import Checkpointer
from tests._train_worker import synthetic_iterator_factory, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = tiny_config("implicit_ce", steps=3, ckpt_every=3)
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    loop.run(cfg, str(wd), make_iterator=synthetic_iterator_factory, progress=False, mesh=mesh)
    return str(wd), train.setup(cfg, mesh=mesh)


def test_restore_params_equals_the_full_restore_and_reads_no_optimizer_state(run_dir):
    wd, s = run_dir
    ck = Checkpointer(wd, async_save=False)
    try:
        state, _, _ = ck.restore(s.abstract_state)
        params = ck.restore_params(s.abstract_state)
        assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(state.params)
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        # An abstract state whose optimizer moments and reference have impossible shapes: a full
        # restore fails on them, the params-only restore never reads them.
        wrong = lambda x: jax.ShapeDtypeStruct(tuple(d + 1 for d in x.shape), x.dtype, sharding=x.sharding)  # noqa: E731
        bogus = s.abstract_state.replace(
            opt_state=jax.tree_util.tree_map(wrong, s.abstract_state.opt_state),
            ref_params=jax.tree_util.tree_map(wrong, s.abstract_state.ref_params),
        )
        with pytest.raises(Exception):
            ck.restore(bogus, step=3)
        again = ck.restore_params(bogus)
        for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(state.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    finally:
        ck.close()


def test_load_trained_returns_the_parameters_only(run_dir):
    wd, s = run_dir
    cfg, params, config = loop.load_trained(wd)
    assert cfg == s.model_cfg and config.objective == "implicit_ce"
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(s.abstract_state.params)
