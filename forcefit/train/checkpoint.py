"""Training checkpoints: written atomically, read back without pickle.

A checkpoint is a plain dict of tensors, dicts, lists, numbers, strings and ``None`` so that
``torch.load(path, weights_only=True)`` reads it: no code is unpickled. Random-generator
states are stored as uint8 tensors. Units: none of its own; the trainer stores losses in the
units of the loss function and times in seconds.

Layout (``FORMAT`` / ``VERSION`` 1), written by :class:`forcefit.train.Trainer`:

- ``format``, ``version``: identify the file;
- ``epoch``: number of completed epochs;
- ``model``: the model's ``state_dict`` (never the ``DistributedDataParallel`` wrapper's);
- ``optimizer``: the optimiser's ``state_dict``; ``schedule``: the learning-rate schedule's state;
- ``shuffle_rng``: state of the shuffling ``torch.Generator``;
- ``torch_rng``: (ranks, bytes) global torch CPU generator state of every rank (dropout);
- ``best_state``: the model ``state_dict`` at the best epoch (or ``None``); ``best``: its epoch,
  loss and the number of epochs since;
- ``history``: per-epoch losses, learning rates and times;
- ``extra_state``: whatever the caller stored (the fitting core keeps its train/val/test
  split there);
- ``meta``: what the run must agree on to be resumed (optimiser, item counts, world size).

Writes go to a temporary file in the target's directory, are flushed and fsynced, then
moved over the target with ``os.replace``: a reader sees the old or the new checkpoint, never
half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "forcefit-trainer-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "model", "optimizer", "schedule", "shuffle_rng",
                 "best_state", "best", "history", "extra_state", "meta")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, read or resumed; the message names the file."""


_SCALARS = (bool, int, float, str, type(None))


def check_safe(obj: Any, where: str = "extra_state") -> None:
    """Raise :class:`CheckpointError` unless ``obj`` loads under ``weights_only=True``.

    Allowed: tensors, numbers, strings, ``None``, and lists / tuples / dicts of these with
    string or integer keys. ``where`` names the field in the message, e.g.
    ``extra_state['split']['test'][3]``.
    """
    if isinstance(obj, (torch.Tensor, *_SCALARS)):
        return
    if isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            check_safe(v, f"{where}[{k}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(
                    f"{where}: dict key {k!r} of type {type(k).__name__} cannot be stored in a "
                    "checkpoint (use str or int keys)")
            check_safe(v, f"{where}[{k!r}]")
        return
    raise CheckpointError(
        f"{where}: value of type {type(obj).__name__} cannot be stored in a checkpoint; use "
        "tensors, numbers, strings, None, lists and dicts (numpy arrays: torch.as_tensor)")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    check_safe(state, "checkpoint")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a trainer checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable, not a
    forcefit trainer checkpoint, of an unknown version, or lacks a field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise CheckpointError(f"checkpoint {path}: cannot be read ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a forcefit trainer checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path}: version {state.get('version')!r}, this forcefit reads {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing field(s) {', '.join(missing)}")
    return state


def read_extra_state(path: str | os.PathLike) -> Any:
    """The ``extra_state`` stored in a checkpoint (e.g. the split, to rebuild the item lists)."""
    return load_checkpoint(path)["extra_state"]


def states_equal(a: Any, b: Any) -> bool:
    """Exact structural equality of two checkpoint values (tensors compared element-wise)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a.cpu(), b.cpu())))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
