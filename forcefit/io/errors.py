"""Errors raised by the readers, and the one place where structures are built from raw labels.

Units: none here; callers pass values already converted to forcefit units (Angstrom, eV,
eV/Angstrom, eV/Angstrom^3 in ASE's stress sign).
"""

from __future__ import annotations

import os

from ..structure import Structure, StructureError


class ReadError(ValueError):
    """A file could not be turned into structures.

    The message names the file, the frame (0-based index inside the file) and the field
    (``positions``, ``forces``, ``StressStyle``, ...) whenever they are known; the same values
    are kept as the attributes ``path``, ``frame`` and ``field``.
    """

    def __init__(self, path, why: str, *, frame: int | None = None, field: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.frame = frame
        self.field = field
        self.why = why
        parts = [self.path if self.path is not None else "<arrays>"]
        if frame is not None:
            parts.append(f"frame {frame}")
        if field is not None:
            parts.append(f"field '{field}'")
        super().__init__(": ".join(parts) + f": {why}")

    def __reduce__(self):  # picklable (multiprocessing, torch.distributed)
        return _rebuild, (self.path, self.why, self.frame, self.field)


def _rebuild(path, why, frame, field) -> ReadError:
    return ReadError(path, why, frame=frame, field=field)


def make_structure(path, frame: int, **fields) -> Structure:
    """``Structure(**fields)``, turning a :class:`StructureError` into a :class:`ReadError`.

    The validation of :class:`~forcefit.structure.Structure` (shapes, NaN, elements, cell)
    stays the single source of truth; this only adds the file and the frame to its message.
    """
    try:
        return Structure(**fields)
    except StructureError as err:
        field = getattr(err, "field", None)
        raise ReadError(path, getattr(err, "why", str(err)), frame=frame, field=field) from err


LABELS = ("energy", "forces", "stress", "energies")


def check_require(require) -> tuple[str, ...]:
    """Validate the ``require=`` argument of the readers; returns it as a tuple."""
    if isinstance(require, str):
        require = (require,)
    require = tuple(require)
    bad = [r for r in require if r not in LABELS]
    if bad:
        raise ValueError(f"require: unknown label(s) {bad}; choose among {list(LABELS)}")
    return require


def require_labels(structure: Structure, require: tuple[str, ...], path, frame: int) -> None:
    """Raise :class:`ReadError` if ``structure`` lacks a label named in ``require``."""
    for label in require:
        if getattr(structure, label) is None:
            raise ReadError(path, f"required label '{label}' is missing", frame=frame,
                            field=label)
