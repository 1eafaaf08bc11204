"""Readers and writers: files -> ``list[Structure]`` in forcefit units.

forcefit units (converted here, at the boundary, and nowhere else): Angstrom, eV, eV/Angstrom,
eV/Angstrom^3 in ASE's stress sign (positive is tensile). Each reader module states the
units of its format.

Entry point :func:`read` detects the format:

==========================  =========================================================
input                       reader
==========================  =========================================================
folder                      :func:`read_fitsnap_folder` (group folders of FitSNAP JSON)
``*.json``                  sniffed: FitSNAP (``{"Dataset": ...}``), miniff (records
                            with ``vectors`` and ``coordinates``) or an ASE JSON database
``*.npy``                   :func:`read_npy_trajectory` on the positions file; pass
                            ``forces=``, ``energies=``, ``numbers=``, ``length_unit=``,
                            ``energy_unit=``, ``units=`` (and ``cell=``, ``pbc=``)
anything else               ``ase.io.iread`` with explicit labels (:mod:`.extxyz`)
==========================  =========================================================

``format=`` forces a reader: ``"fitsnap"``, ``"miniff"``, ``"npy"`` or any ASE format name.
Every failure is a :class:`ReadError` naming the file, the frame and the field.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Sequence
from pathlib import Path

from ..structure import Structure
from .errors import ReadError, check_require
from .extxyz import read_ase, write_extxyz
from .fitsnap import (
    fitsnap_structures,
    is_fitsnap,
    load_json,
    read_fitsnap_folder,
    read_fitsnap_json,
)
from .miniff import is_miniff, miniff_structures, read_miniff_json
from .npy import read_npy_trajectory

__all__ = ["ReadError", "read", "read_ase", "read_fitsnap_folder", "read_fitsnap_json",
           "read_miniff_json", "read_npy_trajectory", "write_extxyz"]

_NPY_KEYS = {"forces", "energies", "numbers", "cell", "pbc", "length_unit", "energy_unit"}


def _expand(spec) -> list[Path]:
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if p.exists():
            return [p]
        if _glob.has_magic(str(spec)):
            hits = sorted(_glob.glob(str(spec)))
            if not hits:
                raise ReadError(spec, "no file matches this pattern", field="file")
            return [Path(h) for h in hits]
        raise ReadError(p, "no such file or folder", field="file")
    if isinstance(spec, Sequence):
        out = [q for item in spec for q in _expand(item)]
        if not out:
            raise ReadError(None, "empty list of files", field="file")
        return out
    raise TypeError(f"read: expected a path, a glob or a list of them, got {type(spec)}")


def read(
    path_or_glob_or_list,
    format: str | None = None,
    *,
    index=":",
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    energies_key: str | None = None,
    require: Sequence[str] = (),
    group: str | None = None,
    group_key: str | None = None,
    weight_key: str | None = None,
    units=None,
    styles: dict | None = None,
    **npy,
) -> list[Structure]:
    """Read structures from files, a glob pattern, a folder, or a list of those.

    Args:
        format: force a reader (see module table); ``None`` detects it.
        index: frames to take from each file (ASE syntax: ``":"``, ``-1``, ``"0:10:2"``).
        energy_key, stress_key: ``atoms.info`` keys of the labels (ASE formats).
        forces_key, energies_key: ``atoms.arrays`` keys (ASE formats). Without a key a label
            comes only from the calculator results; no info key is ever guessed.
        require: labels every frame must carry, e.g. ``("energy", "forces")``.
        group: group name of every structure (overrides folder names and info).
        group_key, weight_key: info keys holding the group and weight (ASE formats).
        units: ASE formats: ``{"length": ..., "energy": ..., "stress": ...}`` naming the
            file's units (default: Angstrom, eV); npy: ``"forcefit"`` or ``"native"``.
        styles: FitSNAP ``*Style`` unit names supplied or overridden.
        **npy: for ``.npy`` trajectories, the arguments of :func:`read_npy_trajectory`.

    Returns:
        list of :class:`~forcefit.structure.Structure`, named ``"file.ext:frame"``.
    """
    require = check_require(require)
    unknown = set(npy) - _NPY_KEYS
    if unknown:
        raise TypeError(f"read: unexpected keyword argument(s) {sorted(unknown)}")

    def _read_ase(path: Path, fmt: str | None) -> list[Structure]:
        return read_ase(path, fmt, index=index, energy_key=energy_key, forces_key=forces_key,
                        stress_key=stress_key, energies_key=energies_key, group=group,
                        group_key=group_key, weight_key=weight_key, units=units,
                        require=require)

    out: list[Structure] = []
    for path in _expand(path_or_glob_or_list):
        fmt = (format or "").lower() or None
        suffix = path.suffix.lower()
        if path.is_dir() and fmt in (None, "fitsnap"):
            got = read_fitsnap_folder(path, styles=styles, require=require)
            if group is not None:
                for s in got:
                    s.group = group
        elif fmt in ("fitsnap", "miniff") or (fmt is None and suffix == ".json"):
            obj = load_json(path)
            kw = {"group": "default" if group is None else group, "index": index,
                  "require": require}
            if fmt != "miniff" and is_fitsnap(obj):
                got = fitsnap_structures(path, obj, styles=styles, **kw)
            elif fmt != "fitsnap" and is_miniff(obj):
                got = miniff_structures(path, obj, **kw)
            elif fmt is None and isinstance(obj, dict) and "ids" in obj:
                got = _read_ase(path, "json")  # an ASE database written as JSON
            else:
                want = fmt or "FitSNAP, miniff or an ASE JSON database"
                raise ReadError(path, f"JSON content is not {want} (no 'Dataset' object, no "
                                      "records with 'vectors' and 'coordinates', no 'ids')",
                                field="file")
        elif fmt == "npy" or (fmt is None and suffix == ".npy"):
            missing = {"numbers", "length_unit", "energy_unit"} - set(npy)
            if missing or units is None:
                need = sorted(missing | ({"units"} if units is None else set()))
                raise ReadError(path, f"a .npy trajectory needs {need} (units are never "
                                      "assumed)", field="units")
            got = read_npy_trajectory(path, units=units, index=index,
                                      group="default" if group is None else group,
                                      require=require, **npy)
        else:
            if npy:
                raise TypeError(f"read: {sorted(npy)} apply to .npy trajectories only")
            got = _read_ase(path, fmt)
        out += got
    return out
