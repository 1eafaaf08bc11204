"""Trajectories stored as numpy arrays (``.npy`` files or arrays in memory).

Arrays (frames = number of snapshots):

- ``positions``: (frames, atoms, 3) | length unit
- ``forces``: (frames, atoms, 3) | energy unit / length unit (optional)
- ``energies``: (frames,) | energy unit, total energy per frame (optional)
- ``numbers``: (atoms,) atomic numbers or chemical symbols, the same for every frame
- ``cell``: (3, 3) or (frames, 3, 3) | length unit, rows are cell vectors (optional)
- ``pbc``: bool or (3,) bools

Units are never assumed: ``length_unit`` and ``energy_unit`` must be named (see
:mod:`forcefit.io.units`, e.g. ``"nm"`` and ``"kJ/mol"``), and ``units`` chooses what
comes out:

- ``units="forcefit"``: converted to Angstrom, eV, eV/Angstrom;
- ``units="native"``: numbers left exactly as given (the coarse-grained module keeps the
  user's units); the structures then hold e.g. nm and kJ/mol in fields documented as
  Angstrom and eV, so ``info['length_unit']`` and ``info['energy_unit']`` record the unit
  names in both modes and consumers must read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from ..structure import Structure
from .errors import ReadError, check_require, make_structure, require_labels
from .units import energy_factor, length_factor

_UNITS = ("forcefit", "native")


def _load(value, field: str):
    """An array, or a path to a ``.npy`` file (memory-mapped, read lazily)."""
    if isinstance(value, (str, Path)):
        p = Path(value)
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False), p
        except (OSError, ValueError) as err:
            raise ReadError(p, f"cannot read .npy file ({err})", field=field) from err
    return value, None


def _float(a, source, field: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ReadError(source, f"not numeric ({err})", field=field) from err


def _first_bad(a: np.ndarray) -> int:
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)  # (frames,)
    return int(np.argmax(bad)) if bad.any() else -1


def _numbers(numbers, source) -> np.ndarray:
    a = np.asarray(numbers).reshape(-1)
    if a.dtype.kind in "US":
        try:
            return np.array([atomic_numbers[str(x)] for x in a], dtype=np.int64)
        except KeyError as err:
            raise ReadError(source, f"unknown element {err}", field="numbers") from err
    return a.astype(np.int64)


def read_npy_trajectory(
    positions,
    forces=None,
    energies=None,
    *,
    numbers,
    cell=None,
    pbc=False,
    length_unit: str,
    energy_unit: str,
    units: str,
    index=":",
    group: str = "default",
    name: str | None = None,
    require=(),
) -> list[Structure]:
    """One :class:`Structure` per frame of the arrays (or ``.npy`` paths) given.

    ``units`` has no default: ``"forcefit"`` converts to Angstrom/eV, ``"native"`` keeps
    the numbers as given (see module docstring). Names are ``"<positions file>:<frame>"``.
    Errors (:class:`ReadError`) name the file, the first bad frame and the field.
    """
    if units not in _UNITS:
        raise ValueError(f"units must be 'forcefit' or 'native', got {units!r}")
    try:
        lf, ef = length_factor(length_unit), energy_factor(energy_unit)
    except ValueError as err:
        raise ValueError(f"read_npy_trajectory: {err}") from err
    if units == "native":
        lf = ef = 1.0
    require = check_require(require)
    pos, ppath = _load(positions, "positions")
    source = ppath if ppath is not None else (name or "<arrays>")
    label = name or (ppath.name if ppath is not None else "trajectory")
    pos = np.asarray(pos)  # still memory-mapped: convert only the selected frames
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ReadError(source, f"expected (frames, atoms, 3), got {pos.shape}",
                        field="positions")
    nf, na = pos.shape[:2]
    frames = np.arange(nf)
    if index not in (":", None):
        from ase.io.formats import string2index

        sel = string2index(index) if isinstance(index, str) else index
        frames = np.atleast_1d(frames[sel])
    z = _numbers(numbers, source)
    if z.shape != (na,):
        raise ReadError(source, f"expected {na} atomic numbers, got {z.shape[0]}",
                        field="numbers")
    arrays = {"positions": _float(pos[frames], source, "positions")}  # (frames, atoms, 3)
    for fld, val, shape in (("forces", forces, (nf, na, 3)), ("energies", energies, (nf,))):
        if val is None:
            continue
        a, p = _load(val, fld)
        a = np.asarray(a)
        if a.shape != shape:
            raise ReadError(p or source, f"expected shape {shape}, got {a.shape}", field=fld)
        arrays[fld] = _float(a[frames], p or source, fld)
    if cell is not None:
        c, p = _load(cell, "cell")
        try:
            c = np.asarray(c, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ReadError(p or source, f"not numeric ({err})", field="cell") from err
        if c.shape == (3, 3):
            c = np.broadcast_to(c, (nf, 3, 3))
        if c.shape != (nf, 3, 3):
            raise ReadError(p or source, f"expected (3, 3) or ({nf}, 3, 3), got {c.shape}",
                            field="cell")
        arrays["cell"] = c[frames]
    for fld, a in arrays.items():
        k = _first_bad(a)
        if k >= 0:
            raise ReadError(source, "contains NaN or infinite values", frame=int(frames[k]),
                            field=fld)
    pos = arrays["positions"] * lf
    cells = arrays["cell"] * lf if "cell" in arrays else np.zeros((len(frames), 3, 3))
    frc = arrays["forces"] * (ef / lf) if "forces" in arrays else None
    eng = arrays["energies"] * ef if "energies" in arrays else None
    info = {"length_unit": "angstrom" if units == "forcefit" else str(length_unit),
            "energy_unit": "eV" if units == "forcefit" else str(energy_unit)}
    out = []
    for k, frame in enumerate(frames.tolist()):
        s = make_structure(source, frame, numbers=z, positions=pos[k], cell=cells[k], pbc=pbc,
                           energy=None if eng is None else eng[k],
                           forces=None if frc is None else frc[k], group=group,
                           name=f"{label}:{frame}", info=dict(info))
        require_labels(s, require, source, frame)
        out.append(s)
    return out
