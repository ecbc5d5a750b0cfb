"""The jitted train step on 8 simulated CPU devices: same losses on every mesh, accumulation, head-only."""

import jax
import numpy as np
import pytest

from prm_jax import sharding, train
from tests._train_worker import synthetic_batch, tiny_config


_INIT = {}
_RUNS = {}


def _run(config, n_steps: int, devices=None):
    """Returns (losses [n], host metrics per step, host params before step 0 and after each step)."""
    key = (str(config.to_dict()), n_steps, None if devices is None else len(devices))
    if key in _RUNS:
        return _RUNS[key]
    mesh = sharding.make_mesh(dict(config.mesh.shape), devices=devices)
    s = train.setup(config, mesh=mesh)
    # One jitted init per objective (compiles are the slow part on 2 cores); other meshes get the
    # same initial state re-sharded, which is what the equality test needs.
    init_key = (config.objective, config.optim.clip is None)  # no clipping: another optimizer state
    if init_key not in _INIT:
        _INIT[init_key] = jax.device_get(train.init_state(s))
    state = jax.device_put(_INIT[init_key], s.state_shardings)
    kw = dict(batch_size=config.train.batch_size, seq_len=config.train.seq_len, max_steps=config.train.max_steps)
    example = synthetic_batch(0, **kw)
    step = train.make_train_step(s, example)
    sh = train.batch_shardings_of(s, example)
    metrics, params = [], [jax.device_get(state.params)]
    for i in range(n_steps):
        state, m = step(state, sharding.shard_batch(synthetic_batch(i, **kw), sh))
        metrics.append(jax.device_get(m))
        params.append(jax.device_get(state.params))
    _RUNS[key] = (np.array([float(m["loss"]) for m in metrics]), metrics, params)
    return _RUNS[key]


def _single(config):
    config.mesh.shape = {"data": 1}
    return jax.devices()[:1]


def test_meshes_give_the_same_losses():
    config = tiny_config("bce")
    ref, _, _ = _run(config, 5, devices=_single(config))
    assert np.all(np.isfinite(ref)) and np.ptp(ref) > 1e-4
    for shape in ({"data": 8}, {"fsdp": 8}, {"data": 2, "fsdp": 2, "tensor": 2}):
        config.mesh.shape = shape
        got, _, _ = _run(config, 5)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=str(shape))


def test_gradient_accumulation_matches_the_full_batch():
    # Every row has the same number of steps, so the mean of micro-batch means is the full mean.
    config = tiny_config("bce")
    devices = _single(config)
    full, m_full, p_full = _run(config, 5, devices=devices)
    config.optim.accum_steps = 4
    acc, m_acc, p_acc = _run(config, 3, devices=devices)
    np.testing.assert_allclose(acc, full[:3], atol=1e-5)
    np.testing.assert_allclose(
        [float(m["grad_norm"]) for m in m_acc], [float(m["grad_norm"]) for m in m_full[:3]], rtol=1e-4
    )
    np.testing.assert_allclose(p_acc[3]["score_head"]["kernel"], p_full[3]["score_head"]["kernel"], atol=1e-5)
    # warmup=2, peak 3e-3, cosine to 3e-4 over 5 steps: lr(0) = 0, lr(1) = 1.5e-3, lr(2) = 3e-3.
    np.testing.assert_allclose([float(m["lr"]) for m in m_acc], [0.0, 1.5e-3, 3e-3], rtol=1e-6)


def test_head_only_steps_freeze_the_backbone_then_release_it():
    config = tiny_config("bce", steps=10)
    devices = _single(config)
    config.optim.head_only_steps = 2
    config.optim.weight_decay = 0.1  # decay must not move frozen params either
    config.optim.warmup = 0
    _, _, p = _run(config, 3, devices=devices)
    for k in (1, 2):
        np.testing.assert_array_equal(
            p[k]["layers"]["mlp"]["up_proj"]["kernel"], p[0]["layers"]["mlp"]["up_proj"]["kernel"]
        )
        np.testing.assert_array_equal(p[k]["embed"]["embedding"], p[0]["embed"]["embedding"])
        assert np.abs(p[k]["score_head"]["kernel"] - p[k - 1]["score_head"]["kernel"]).max() > 1e-6
    assert np.abs(p[3]["layers"]["mlp"]["up_proj"]["kernel"] - p[2]["layers"]["mlp"]["up_proj"]["kernel"]).max() > 1e-6


def test_a_whole_run_probe_trains_the_head_as_the_masked_path_does():
    """head_only_steps >= steps skips the model's backward pass (its params enter as constants); the
    head moves exactly as under the masked update, and the model does not move."""

    def cfg(steps, head_only):
        c = tiny_config("bce", steps=steps)
        c.optim.update(head_only_steps=head_only, clip=None, warmup=0, decay="constant")
        return c

    devices = _single(cfg(3, 3))
    _, m_probe, p_probe = _run(cfg(3, 3), 3, devices=devices)
    _, m_mask, p_mask = _run(cfg(10, 3), 3, devices=devices)
    for k in (1, 2, 3):
        np.testing.assert_allclose(p_probe[k]["score_head"]["kernel"], p_mask[k]["score_head"]["kernel"], atol=1e-6)
        np.testing.assert_array_equal(
            p_probe[k]["layers"]["attn"]["q_proj"]["kernel"], p_probe[0]["layers"]["attn"]["q_proj"]["kernel"]
        )
    assert np.abs(p_probe[3]["score_head"]["kernel"] - p_probe[0]["score_head"]["kernel"]).max() > 1e-6
    # the probe's gradient is the head's alone: smaller than the whole model's
    assert all(float(a["grad_norm"]) < float(b["grad_norm"]) for a, b in zip(m_probe, m_mask))


def test_bad_objective_is_named():
    with pytest.raises(ValueError, match="config.objective='nope'"):
        train.setup(tiny_config("nope"))


def test_missing_batch_key_is_named():
    config = tiny_config("pav")
    s = train.setup(config, mesh=sharding.make_mesh({"data": -1}))
    example = synthetic_batch(0, batch_size=8, seq_len=32, max_steps=4)
    del example["q_targets"]
    with pytest.raises(ValueError, match=r"needs batch keys \['q_targets'\]"):
        train.make_train_step(s, example)


def test_eval_summary_auroc_against_a_hand_count():
    outs = [
        {
            "loss": 1.0,
            "metrics": {"loss": 1.0},
            "step_scores": np.array([[2.0, -1.0, 0.5]]),
            "step_labels": np.array([[1.0, 0.0, 0.0]]),
            "step_mask": np.array([[True, True, True]]),
        },
        {
            "loss": 3.0,
            "metrics": {"loss": 3.0},
            "step_scores": np.array([[-0.2, 9.0, 0.0]]),
            "step_labels": np.array([[1.0, 0.0, 0.0]]),
            "step_mask": np.array([[True, False, False]]),
        },
    ]
    got = train.eval_summary(outs)
    # positives {2.0, -0.2}, negatives {-1.0, 0.5}: pairs won 2 (2>-1, 2>.5) + 1 (-0.2>-1) of 4.
    assert got["step_auroc"] == pytest.approx(3 / 4)
    # predictions (score > 0) vs labels: 2.0 right, -1 right, 0.5 wrong, -0.2 wrong.
    assert got["step_acc"] == pytest.approx(2 / 4)
    assert got["loss"] == pytest.approx(2.0)
