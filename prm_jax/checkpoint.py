"""Orbax checkpoints of a training run: train state + data-iterator state + config, under WORKDIR/ckpt.

Layout: `WORKDIR/ckpt/<step>/{state,data,config}`; `state` through `StandardSave` (sharded arrays,
restored straight into their target shardings), `data` and `config` as JSON. Saves are asynchronous;
`wait()` blocks until the last one is on disk.
"""
from __future__ import annotations

import base64
import os
from typing import Any

import orbax.checkpoint as ocp

ITEMS = ("state", "data", "config")


def _encode_data_state(data_state: Any) -> Any:
    # Iterator states may be bytes (grain) or plain JSON; JSON cannot hold bytes.
    if isinstance(data_state, bytes):
        return {"__bytes__": base64.b64encode(data_state).decode()}
    return {"__json__": data_state}


def _decode_data_state(obj: Any) -> Any:
    if isinstance(obj, dict) and "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    if isinstance(obj, dict) and "__json__" in obj:
        return obj["__json__"]
    return obj


class Checkpointer:
    """Saves and restores (state, data_state, config) under `workdir/ckpt` with an Orbax manager."""

    def __init__(self, workdir: str, *, max_to_keep: int | None = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "ckpt"))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        """Returns the latest saved step, or None when there is no checkpoint."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: Any, config_dict: dict) -> None:
        """Starts an asynchronous save of step `step` (forced: the caller decides when to save)."""
        self.manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_encode_data_state(data_state)),
            config=ocp.args.JsonSave(config_dict)), force=True)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, dict]:
        """Returns (state, data_state, config_dict) of `step` (default: latest), state in its shardings.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying `.sharding`.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
        return out["state"], _decode_data_state(out["data"]), out["config"]

    def restore_config(self, step: int | None = None) -> dict:
        """Returns the config dict saved with `step` (default: latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are finished."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
