"""Every format ASE reads (extxyz first-class), and the extxyz writer.

Units: ASE formats hold Angstrom, eV, eV/Angstrom and eV/Angstrom^3 in ASE's stress sign
(positive is tensile); that is what is assumed unless ``units={"length": ..., "energy": ...,
"stress": ...}`` names other units (stress defaults to energy/length^3), which are then
converted to forcefit units.

Labels are taken explicitly, never guessed among info keys:

- with ``energy_key`` / ``stress_key``: ``atoms.info[key]``; with ``forces_key`` /
  ``energies_key``: ``atoms.arrays[key]``. ASE's extxyz reader moves the standard names
  (``energy``, ``forces``, ``stress``, ``energies``...) into a calculator, so a key is also
  looked up in ``atoms.calc.results``. A key found in no frame of a file is an error (a typo
  would otherwise silently drop a label).
- without a key: ``atoms.calc.results[label]`` only; absent -> the label is None.

Stress is accepted as a Voigt 6-vector (xx, yy, zz, yz, xz, xy) or a 3x3 / 9-vector matrix.
The writer stores group, weight and name under the reserved info keys ``forcefit_group``,
``forcefit_weight`` and ``forcefit_name``, which the reader always recognises. Columns are
written by ASE with 8 decimals (1e-8 Angstrom, 1e-8 eV/Angstrom); header values in full.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..structure import Structure, matrix_to_voigt
from .errors import ReadError, make_structure, require_labels
from .units import energy_factor, length_factor, stress_factor

GROUP_KEY = "forcefit_group"
WEIGHT_KEY = "forcefit_weight"
NAME_KEY = "forcefit_name"
_RESERVED = (GROUP_KEY, WEIGHT_KEY, NAME_KEY)
_MISSING = object()


def _frames(path: Path, format: str | None, index):
    """Yield (frame number in the file, Atoms), turning ASE failures into ReadError."""
    import ase.io
    from ase.io.formats import string2index

    sel = string2index(index) if isinstance(index, str) else index
    if isinstance(sel, int) and sel >= 0:
        sel = slice(sel, sel + 1)
    simple = isinstance(sel, slice) and (sel.start or 0) >= 0 and (sel.step or 1) > 0
    start, step = ((sel.start or 0), (sel.step or 1)) if simple else (0, 1)
    count = 0
    out = []
    try:
        for atoms in ase.io.iread(str(path), index=sel if simple else slice(None),
                                  format=format):
            out.append((start + step * count, atoms))
            count += 1
    except Exception as err:  # ASE raises anything from KeyError to StopIteration
        frame = start + step * count
        if isinstance(err, KeyError):
            raise ReadError(path, f"unknown element or key {err}", frame=frame,
                            field="species") from err
        raise ReadError(path, f"cannot be read (format {format or 'auto'}): "
                              f"{type(err).__name__}: {err}", frame=frame) from err
    if not simple:
        try:
            picked = out[sel]
        except TypeError as err:
            raise ValueError(f"index: cannot select frames with {index!r}") from err
        out = picked if isinstance(picked, list) else [picked]
    return out


def _get(atoms, key: str | None, label: str, per_atom: bool):
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", {}) if calc is not None else {}
    if key is None:
        return results.get(label, _MISSING)
    container = atoms.arrays if per_atom else atoms.info
    if key in container:
        return container[key]
    return results.get(key, _MISSING)


def _stress(value, path, frame):
    s = np.asarray(value, dtype=np.float64)
    if s.shape == (9,):
        s = s.reshape(3, 3)
    if s.shape not in ((6,), (3, 3)):
        raise ReadError(path, f"stress must be Voigt (6,) or (3, 3), got shape {s.shape}",
                        frame=frame, field="stress")
    return s


def read_ase(
    path,
    format: str | None = None,
    *,
    index=":",
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    energies_key: str | None = None,
    group: str | None = None,
    group_key: str | None = None,
    weight_key: str | None = None,
    units: dict | None = None,
    require: tuple[str, ...] = (),
) -> list[Structure]:
    """Read one file through ``ase.io.iread`` with explicit labels (see module docstring)."""
    path = Path(path)
    lf, ef, sf = 1.0, 1.0, 1.0
    if units is not None:
        unknown = set(units) - {"length", "energy", "stress"}
        if unknown:
            raise ValueError(f"units: unknown keys {sorted(unknown)}")
        lf = length_factor(units.get("length", "angstrom"))
        ef = energy_factor(units.get("energy", "eV"))
        sf = stress_factor(units["stress"]) if "stress" in units else ef / lf**3
    keys = {"energy": (energy_key, False), "forces": (forces_key, True),
            "stress": (stress_key, False), "energies": (energies_key, True)}
    found = {label: False for label in keys}
    out = []
    frames = _frames(path, format, index)
    for frame, atoms in frames:
        labels = {}
        for label, (key, per_atom) in keys.items():
            v = _get(atoms, key, label, per_atom)
            found[label] |= v is not _MISSING
            labels[label] = None if v is _MISSING else v
        if labels["stress"] is not None:
            labels["stress"] = _stress(labels["stress"], path, frame) * sf
        if labels["energy"] is not None:
            labels["energy"] = np.asarray(labels["energy"], dtype=np.float64) * ef
        for label in ("forces", "energies"):
            if labels[label] is not None:
                f = ef / lf if label == "forces" else ef
                labels[label] = np.asarray(labels[label], dtype=np.float64) * f
        info = {k: v for k, v in atoms.info.items()
                if k not in _RESERVED and k not in (energy_key, stress_key)}
        g = group if group is not None else atoms.info.get(GROUP_KEY, "default")
        if group is None and group_key is not None:
            g = atoms.info.get(group_key, g)
        w = atoms.info.get(weight_key if weight_key is not None else WEIGHT_KEY, 1.0)
        s = make_structure(
            path, frame,
            numbers=atoms.numbers, positions=atoms.positions * lf,
            cell=np.asarray(atoms.cell) * lf, pbc=atoms.pbc, group=str(g), weight=w,
            name=str(atoms.info.get(NAME_KEY, f"{path.name}:{frame}")), info=info, **labels,
        )
        require_labels(s, require, path, frame)
        out.append(s)
    for label, (key, _) in keys.items():
        if key is not None and frames and not found[label]:
            atoms = frames[0][1]
            have = sorted(atoms.arrays if keys[label][1] else atoms.info)
            raise ReadError(path, f"{label}_key={key!r} is in no frame; frame "
                                  f"{frames[0][0]} has {have}", field=label)
    return out


def _writable(key: str, value) -> bool:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return True
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return a.dtype.kind in "biuf" and a.ndim <= 2 and a.size > 0


def write_extxyz(path, structures: Structure | Sequence[Structure]) -> None:
    """Write ``structures`` to extended XYZ at ``path`` atomically (temp file + os.replace).

    Every label round-trips through :func:`forcefit.io.read`: energy, forces, stress
    (ASE sign, as a 3x3 ``stress=`` header), per-atom ``energies``, group, weight and name
    (reserved info keys). Info values that extxyz cannot hold (dicts, objects) are skipped
    with a warning naming the key.
    """
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    if isinstance(structures, Structure):
        structures = [structures]
    images = []
    for s in structures:
        atoms = Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc)
        for k, v in s.info.items():
            if k in _RESERVED or k in ("energy", "stress", "free_energy"):
                continue
            if _writable(k, v):
                atoms.info[k] = v
            else:
                warnings.warn(f"write_extxyz: {s.name}: info key {k!r} "
                              f"({type(v).__name__}) cannot be stored in extxyz; skipped",
                              stacklevel=2)
        atoms.info[GROUP_KEY] = s.group
        atoms.info[WEIGHT_KEY] = float(s.weight)
        if s.name:
            atoms.info[NAME_KEY] = s.name
        results = {}
        if s.energy is not None:
            results["energy"] = s.energy
        if s.forces is not None:
            results["forces"] = s.forces
        if s.stress is not None:
            results["stress"] = matrix_to_voigt(s.stress)
        if s.energies is not None:
            results["energies"] = s.energies
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        ase.io.write(fh, images, format="extxyz")
