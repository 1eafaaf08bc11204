"""miniff's JSON structure files (``dfttools`` ``CrystalCell`` records, as ``Cell.load`` reads).

Format: a JSON list (or one object) of records
``{"vectors": {"data": 3x3, "units": "angstrom"}, "coordinates": {"data": N x 3}, "values":
{"data": N species names}, "meta": {"total-energy": {"data": E, "units": "eV"}, "forces":
{"data": N x 3, "units": "eV/angstrom"}, "charges": {"data": N}, ...}}``.

- ``vectors`` rows are the cell vectors a, b, c; ``coordinates`` are FRACTIONAL, so
  Cartesian positions = coordinates @ vectors. Cells are periodic.
- species names are lowercase (``"bi"``, ``"se"``) and are capitalised to symbols.
- Units: read from each ``units`` field (``angstrom``; ``eV``; ``eV/angstrom``, also the other
  names of :mod:`forcefit.io.units`) and converted to Angstrom, eV, eV/Angstrom; a unit that is
  missing is taken as miniff's default of that field (angstrom, eV, eV/angstrom) only when the
  record gives none, an unknown one is a :class:`ReadError`. The Bi-Se sample in
  ``shared/data/bise_miniff`` states angstrom, eV and eV/angstrom.
- ``forces`` are read as labelled (as forces, F = -dE/dr); ``charges`` (dimensionless, per
  atom) go to ``info['charges']``, ``source-file-name`` to ``info['source']``.

Caution on the sign of the Bi-Se sample's ``forces``: in all 10 frames the shortest 10 % of
pairs (compressed bonds, down to 2.04 A for Bi-Se) are on average pulled *together* by the
stored vectors (only 17-42 % of them pushed apart), and between successive frames of the
relaxation atoms move *against* them (median cosine -0.13 to -0.43 in 8 of 9 steps). Both are
what the energy gradient, not the force, would do; the file may store dE/dr under ``forces``.
The reader keeps the file's sign by default (miniff parity); ``negate_forces=True`` flips it.
The observation is pinned by ``tests/test_io.py::test_miniff_bise_force_sign_observation``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from ..structure import Structure
from .errors import ReadError, check_require, make_structure, require_labels
from .fitsnap import load_json
from .units import energy_factor, length_factor


def is_miniff(obj) -> bool:
    recs = obj if isinstance(obj, list) else [obj]
    return bool(recs) and all(isinstance(r, dict) and "coordinates" in r and "vectors" in r
                              for r in recs[:1])


def _block(rec: dict, key: str, path, frame, meta: bool = False):
    src = rec.get("meta", {}) if meta else rec
    if key not in src:
        return None, None
    b = src[key]
    if isinstance(b, dict):
        return b.get("data"), b.get("units")
    return b, None


def _array(value, path, frame, field):
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ReadError(path, f"not numeric ({err})", frame=frame, field=field) from err


def _factor(fn, unit, default, path, frame, field):
    try:
        return fn(default if unit is None else unit)
    except ValueError as err:
        raise ReadError(path, str(err), frame=frame, field=field) from err


def _force_factor(unit, path, frame) -> float:
    name = "eV/angstrom" if unit is None else str(unit)
    if "/" not in name:
        raise ReadError(path, f"unknown force unit {unit!r}", frame=frame, field="meta.forces")
    e, length = name.split("/", 1)
    if e.lower() in ("kj", "kcal"):  # kJ/mol/nm style
        e, length = f"{e}/{length.split('/')[0]}", length.split("/", 1)[-1]
    ef = _factor(energy_factor, e, "eV", path, frame, "meta.forces")
    lf = _factor(length_factor, length, "angstrom", path, frame, "meta.forces")
    return ef / lf


def miniff_structures(path: Path, obj, *, group: str = "default", index=":",
                      require=(), negate_forces: bool = False) -> list[Structure]:
    """Structures from an already parsed miniff JSON object ``obj`` of file ``path``."""
    recs = obj if isinstance(obj, list) else [obj]
    frames = list(range(len(recs)))
    if index not in (":", None):
        from ase.io.formats import string2index

        sel = string2index(index) if isinstance(index, str) else index
        frames = frames[sel] if isinstance(sel, slice) else [frames[sel]]
    out = []
    for frame in frames:
        rec = recs[frame]
        if not (isinstance(rec, dict) and "coordinates" in rec and "vectors" in rec):
            raise ReadError(path, "record lacks 'vectors' or 'coordinates'", frame=frame)
        vec, vunit = _block(rec, "vectors", path, frame)
        lf = _factor(length_factor, vunit, "angstrom", path, frame, "vectors")
        cell = _array(vec, path, frame, "vectors") * lf  # (3, 3)
        frac, _ = _block(rec, "coordinates", path, frame)
        frac = _array(frac, path, frame, "coordinates")  # (atoms, 3)
        if frac.ndim != 2 or frac.shape[1:] != (3,) or cell.shape != (3, 3):
            raise ReadError(path, f"coordinates {frac.shape} / vectors {cell.shape} are not "
                                  "(atoms, 3) / (3, 3)", frame=frame, field="coordinates")
        names, _ = _block(rec, "values", path, frame)
        try:
            numbers = np.array([atomic_numbers[str(n).capitalize()] for n in names], np.int64)
        except (KeyError, TypeError) as err:
            raise ReadError(path, f"unknown species {err}", frame=frame, field="values") from err
        e, eunit = _block(rec, "total-energy", path, frame, meta=True)
        if e is not None:
            e = float(_array(e, path, frame, "meta.total-energy")) * _factor(
                energy_factor, eunit, "eV", path, frame, "meta.total-energy")
        f, funit = _block(rec, "forces", path, frame, meta=True)
        if f is not None:
            f = _array(f, path, frame, "meta.forces") * _force_factor(funit, path, frame)
            if negate_forces:
                f = -f
        info = {}
        q, _ = _block(rec, "charges", path, frame, meta=True)
        if q is not None:
            info["charges"] = _array(q, path, frame, "meta.charges")
            if info["charges"].shape != (len(numbers),):
                raise ReadError(path, f"expected shape ({len(numbers)},), got "
                                      f"{info['charges'].shape}", frame=frame,
                                field="meta.charges")
        if "source-file-name" in rec.get("meta", {}):
            info["source"] = str(rec["meta"]["source-file-name"])
        s = make_structure(path, frame, numbers=numbers, positions=frac @ cell, cell=cell,
                           pbc=True, energy=e, forces=f, group=group,
                           name=f"{path.name}:{frame}", info=info)
        require_labels(s, require, path, frame)
        out.append(s)
    return out


def read_miniff_json(path, *, group: str = "default", index=":", require=(),
                     negate_forces: bool = False) -> list[Structure]:
    """Read a miniff JSON structure file (see module docstring) into structures.

    ``negate_forces=True`` stores minus the file's ``forces`` (see the sign caution above).
    """
    path = Path(path)
    obj = load_json(path)
    if not is_miniff(obj):
        raise ReadError(path, "not a miniff JSON file (records need 'vectors' and "
                              "'coordinates')", field="file")
    return miniff_structures(path, obj, group=group, index=index,
                             require=check_require(require), negate_forces=negate_forces)
