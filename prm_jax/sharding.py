"""Device mesh, the logical-axis rules table, and the shardings of params, optimizer state and batch.

Sharding is data: parameters and activations carry logical axis names (`vocab`, `embed`, `heads`,
`kv_heads`, `head_dim`, `mlp`, `layers`, `batch`, `length`), and one rules table maps each name to
mesh axes (`data`, `fsdp`, `tensor`). A dimension whose size does not divide by its mesh axes is
replicated with a warning rather than failing the whole run.

Activation constraints inside the model (`nn.with_logical_constraint`) only take effect while both
the mesh (`jax.set_mesh`) and the rules (`nn.logical_axis_rules`) are active at trace time: use
`activation_context(mesh, rules)` around the traced function body (see `train.py`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes (None: replicated). Order matters: a mesh axis is used at most once per
# array, first rule wins, so `batch` (listed first) keeps `fsdp` for activations and `embed` only
# shards over `fsdp` in parameters.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("steps", None),
)


def normalize_rules(rules: Iterable[Sequence[Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Returns the rules as a tuple of (logical, mesh axes) with lists turned into tuples.

    Accepts the form a ConfigDict / JSON round trip produces (lists of lists).
    """
    if rules is None:
        return DEFAULT_RULES
    out = []
    for i, rule in enumerate(rules):
        if len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"mesh.rules[{i}] must be (logical_name, mesh_axes), got {rule!r}")
        name, axes = rule
        if isinstance(axes, (list, tuple)):
            axes = tuple(axes) if len(axes) else None
            for a in axes or ():
                if a not in MESH_AXES:
                    raise ValueError(f"mesh.rules[{i}] ({name}): unknown mesh axis {a!r}")
        elif axes is not None and axes not in MESH_AXES:
            raise ValueError(f"mesh.rules[{i}] ({name}): unknown mesh axis {axes!r}")
        out.append((name, axes))
    return tuple(out)


def mesh_shape(shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Returns the mesh shape with the one -1 entry filled so the product equals `num_devices`."""
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh.shape has unknown axes {sorted(unknown)}; allowed: {MESH_AXES}")
    dims = {a: int(shape.get(a, 1)) for a in MESH_AXES}
    free = [a for a, v in dims.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"mesh.shape {dict(shape)}: at most one axis may be -1")
    fixed = math.prod(v for v in dims.values() if v != -1)
    if any(v == 0 or v < -1 for v in dims.values()):
        raise ValueError(f"mesh.shape {dict(shape)}: sizes must be positive or -1")
    if free:
        if num_devices % fixed:
            raise ValueError(f"mesh.shape {dict(shape)}: {num_devices} devices do not divide by {fixed}")
        dims[free[0]] = num_devices // fixed
    if math.prod(dims.values()) != num_devices:
        raise ValueError(f"mesh.shape {dims} has {math.prod(dims.values())} devices, but {num_devices} are available")
    return dims


def make_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """Returns a Mesh over all (global, multi-host) devices with axes ('data', 'fsdp', 'tensor')."""
    devices = list(jax.devices() if devices is None else devices)
    dims = mesh_shape(shape or {"data": -1}, len(devices))
    sizes = tuple(dims[a] for a in MESH_AXES)
    if len(devices) == len(jax.devices()) and devices == list(jax.devices()):
        # jax.make_mesh orders devices for the physical topology (and across hosts).
        return jax.make_mesh(
            sizes, MESH_AXES, devices=devices, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES)
        )
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def _as_tuple(axes: Any) -> tuple[str, ...]:
    if axes is None:
        return ()
    return tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)


def logical_to_mesh_spec(
    logical: Sequence[Any], shape: Sequence[int] | None, mesh: Mesh, rules: Sequence[tuple[str, Any]], name: str = ""
) -> P:
    """Returns the mesh PartitionSpec for one array from its logical axis names.

    A mesh axis is used at most once per array (first rule wins). A dimension whose size does not
    divide by the product of its mesh axes sizes is replicated, with a warning naming the array.
    """
    table = dict(rules)
    used: set[str] = set()
    out = []
    for dim, lname in enumerate(logical):
        axes = tuple(a for a in _as_tuple(table.get(lname)) if a not in used) if lname else ()
        if lname is not None and lname not in table:
            warnings.warn(f"{name}: logical axis {lname!r} has no rule; replicated", stacklevel=2)
        if axes and shape is not None:
            size = math.prod(mesh.shape[a] for a in axes)
            if shape[dim] % size:
                # Try dropping trailing axes before giving up on the dimension.
                while axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
                    axes = axes[:-1]
                warnings.warn(
                    f"{name}: dim {dim} ({lname}, size {shape[dim]}) does not divide by "
                    f"mesh {size}; sharded over {axes or 'nothing'} instead",
                    stacklevel=2,
                )
        used.update(axes)
        out.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def param_shardings(logical_tree: Any, shapes_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Any:
    """Returns a pytree of NamedSharding for params from their logical PartitionSpecs and shapes.

    `logical_tree` mirrors the params with PartitionSpecs of logical names (model.param_logical_axes);
    `shapes_tree` mirrors them with arrays or ShapeDtypeStructs (model.abstract_params).
    """
    flat_shapes, treedef = jax.tree_util.tree_flatten_with_path(shapes_tree)
    flat_logical = treedef.flatten_up_to(logical_tree)
    out = []
    for (path, leaf), logical in zip(flat_shapes, flat_logical):
        logical = tuple(logical) if logical is not None else ()
        if len(logical) > len(leaf.shape):
            raise ValueError(f"param {_path_name(path)}: logical axes {logical} longer than shape {leaf.shape}")
        logical = logical + (None,) * (len(leaf.shape) - len(logical))
        spec = logical_to_mesh_spec(logical, leaf.shape, mesh, rules, name=_path_name(path))
        out.append(NamedSharding(mesh, spec))
    return jax.tree_util.tree_unflatten(treedef, out)


def _dict_keys(path) -> tuple:
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def mirror_shardings(tree: Any, params_abstract: Any, params_shardings: Any, mesh: Mesh) -> Any:
    """Returns shardings for `tree` (e.g. an optax state) whose param-shaped leaves follow the params.

    A leaf takes the sharding of the param whose dict-key path is a suffix of the leaf's dict-key path
    and whose shape matches (Adam's mu and nu mirror the params); every other leaf (counts, scalars,
    masked placeholders) is replicated.
    """
    by_path = {}
    for (path, leaf), sh in zip(
        jax.tree_util.tree_flatten_with_path(params_abstract)[0], jax.tree_util.tree_leaves(params_shardings)
    ):
        by_path[_dict_keys(path)] = (tuple(leaf.shape), sh)
    replicated = NamedSharding(mesh, P())

    def pick(path, leaf):
        keys = _dict_keys(path)
        for start in range(len(keys)):
            hit = by_path.get(keys[start:])
            if hit is not None and hit[0] == tuple(getattr(leaf, "shape", ())):
                return hit[1]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, tree)


def batch_sharding(mesh: Mesh, ndim: int, batch_axes: Any = ("data", "fsdp")) -> NamedSharding:
    """Returns the sharding of one batch array: leading dim over `batch_axes`, the rest replicated."""
    axes = tuple(a for a in _as_tuple(batch_axes) if mesh.shape[a] > 1) or None
    return NamedSharding(mesh, P(axes, *([None] * (ndim - 1))) if ndim else P())


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh, rules=DEFAULT_RULES) -> dict:
    """Returns {key: NamedSharding} for a batch dict, batch dim over the mesh axes of `batch`."""
    axes = dict(normalize_rules(rules)).get("batch", ("data", "fsdp"))
    n = math.prod(mesh.shape[a] for a in _as_tuple(axes))
    out = {}
    for k, v in batch.items():
        if np.ndim(v) and np.shape(v)[0] % n:
            raise ValueError(
                f"batch[{k!r}]: batch size {np.shape(v)[0]} does not divide by the {n} devices of mesh axes {axes}"
            )
        out[k] = batch_sharding(mesh, np.ndim(v), axes)
    return out


def shard_batch(batch: Mapping[str, Any], shardings: Mapping[str, NamedSharding]) -> dict:
    """Returns the global jax.Array batch built from this process's local numpy batch.

    Every process passes its own rows (`process_count` equal shards of the global batch, in process
    order); with one process this is a plain device_put.
    """
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if jax.process_count() == 1:
            out[k] = jax.device_put(v, shardings[k])
        else:
            out[k] = jax.make_array_from_process_local_data(shardings[k], v)
    return out


@contextlib.contextmanager
def activation_context(mesh: Mesh | None, rules: Sequence[tuple[str, Any]]):
    """Context in which the model's logical activation constraints resolve to this mesh and rules."""
    import flax.linen as nn

    with contextlib.ExitStack() as stack:
        if mesh is not None:
            stack.enter_context(jax.set_mesh(mesh))
        stack.enter_context(nn.logical_axis_rules(tuple(rules)))
        yield
