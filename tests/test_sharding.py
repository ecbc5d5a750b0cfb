"""Mesh construction, the rules table, and the shardings of params / optimizer state / batch."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from prm_jax import sharding


def test_mesh_shape_fills_minus_one():
    assert sharding.mesh_shape({"data": -1}, 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert sharding.mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == {"data": 2, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize(
    "shape, msg",
    [
        ({"data": -1, "fsdp": -1}, "at most one"),
        ({"data": 3, "fsdp": -1}, "do not divide"),
        ({"data": 2, "fsdp": 2}, "4 devices"),
        ({"pipeline": 2}, "unknown axes"),
    ],
)
def test_mesh_shape_errors(shape, msg):
    with pytest.raises(ValueError, match=msg):
        sharding.mesh_shape(shape, 8)


def test_make_mesh_uses_all_devices():
    mesh = sharding.make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh.devices.size == jax.device_count() == 8
    one = sharding.make_mesh({"data": -1}, devices=jax.devices()[:1])
    assert one.devices.size == 1


def test_normalize_rules_round_trips_json_lists_and_rejects_bad_axes():
    rules = sharding.normalize_rules([["batch", ["data", "fsdp"]], ["embed", "fsdp"], ["mlp", []]])
    assert rules == (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", None))
    assert sharding.normalize_rules(None) == sharding.DEFAULT_RULES
    with pytest.raises(ValueError, match="unknown mesh axis 'model'"):
        sharding.normalize_rules([["mlp", "model"]])


def test_logical_to_mesh_spec_divisibility_and_axis_reuse():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    rules = sharding.DEFAULT_RULES
    # A mesh axis is used once per array: embed wants fsdp, already taken by batch.
    assert sharding.logical_to_mesh_spec(("batch", "length", "embed"), (8, 4, 6), mesh, rules) == P(("data", "fsdp"))
    assert sharding.logical_to_mesh_spec(("embed", "mlp"), (8, 6), mesh, rules) == P("fsdp", "tensor")
    # 7 does not divide by tensor=2: replicated, with a warning naming the array.
    with pytest.warns(UserWarning, match="w: dim 1 .* does not divide"):
        spec = sharding.logical_to_mesh_spec(("embed", "mlp"), (8, 7), mesh, rules, name="w")
    assert spec == P("fsdp")
    # batch over (data, fsdp) = 4 with 2 rows: falls back to data only.
    with pytest.warns(UserWarning):
        assert sharding.logical_to_mesh_spec(("batch",), (2,), mesh, rules) == P("data")


def _tiny_model_cfg():
    from prm_jax import model

    return model.ModelConfig.preset(
        "tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64
    )


def test_param_and_optimizer_shardings_follow_the_rules():
    from prm_jax import model

    cfg = _tiny_model_cfg()
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    abstract = model.abstract_params(cfg)
    sh = sharding.param_shardings(model.param_logical_axes(cfg), abstract, mesh, sharding.DEFAULT_RULES)
    assert sh["embed"]["embedding"].spec == P("tensor", "fsdp")  # [vocab, embed]
    assert sh["layers"]["mlp"]["up_proj"]["kernel"].spec == P(None, "fsdp", "tensor")  # [layers, embed, mlp]
    assert sh["layers"]["attn"]["q_proj"]["kernel"].spec == P(None, "fsdp", "tensor")  # [.., heads, head_dim]
    # score_head kernel [embed, 1]: only embed is sharded.
    assert sh["score_head"]["kernel"].spec == P("fsdp")

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    opt_abs = jax.eval_shape(tx.init, abstract)
    opt_sh = sharding.mirror_shardings(opt_abs, abstract, sh, mesh)
    adam = opt_sh[1][0]
    assert adam.mu["layers"]["mlp"]["up_proj"]["kernel"] == sh["layers"]["mlp"]["up_proj"]["kernel"]
    assert adam.nu["embed"]["embedding"] == sh["embed"]["embedding"]
    assert adam.count.spec == P()


def test_batch_shardings_and_bad_batch():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
    batch = {"tokens": np.zeros((8, 16), np.int32), "outcome": np.zeros((8,), np.float32)}
    sh = sharding.batch_shardings(batch, mesh)
    assert sh["tokens"].spec == P(("data", "fsdp"), None)
    arr = sharding.shard_batch(batch, sh)
    assert arr["tokens"].addressable_shards[0].data.shape == (1, 16)
    with pytest.raises(ValueError, match=r"batch\['tokens'\]: batch size 6"):
        sharding.batch_shardings({"tokens": np.zeros((6, 4))}, mesh)
