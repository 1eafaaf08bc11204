"""FitSNAP JSON files and folders of group folders.

Format (FitSNAP's ``JSON`` scraper): optional ``#`` comment lines, then
``{"Dataset": {"Data": [record, ...], "<Field>Style": unit, ...}}`` with records holding
``Lattice`` (3x3, rows are the cell vectors a, b, c), ``Positions`` (N x 3, Cartesian),
``AtomTypes`` (chemical symbols), ``Energy`` (total), ``Forces`` (N x 3), ``Stress`` (3x3)
and optionally ``NumAtoms``. Every cell is periodic.

Units: the ``*Style`` keys name them and are honoured; the styles known here are
``angstrom`` (PositionsStyle, LatticeStyle), ``electronvolt`` (EnergyStyle),
``electronvoltperangstrom`` (ForcesStyle), ``bar`` / ``kbar`` / ``GPa`` (StressStyle) and
``chemicalsymbol`` (AtomTypeStyle); any other style (or a missing one, unless passed through
``styles=``) is a :class:`ReadError`. Output is in forcefit units: Angstrom, eV, eV/Angstrom,
eV/Angstrom^3.

Stress sign: FitSNAP, LAMMPS and VASP write the pressure tensor, positive when compressed;
ASE's stress is positive when stretched (tensile). So sigma_ASE = -Stress * (unit factor);
1 bar = 1e5 Pa = 6.2415e-7 eV/Angstrom^3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers

from ..structure import Structure
from .errors import ReadError, check_require, make_structure, require_labels
from .units import BOHR, energy_factor, stress_factor

_LENGTH = {"angstrom": 1.0, "bohr": BOHR}
_ENERGY = {"electronvolt": 1.0, "ev": 1.0, "kcal/mol": energy_factor("kcal/mol"),
           "kj/mol": energy_factor("kJ/mol"), "hartree": energy_factor("hartree")}
_FORCES = {"electronvoltperangstrom": 1.0, "ev/angstrom": 1.0}
_STRESS = {"bar": stress_factor("bar"), "kbar": stress_factor("kbar"),
           "gpa": stress_factor("GPa")}
STYLES = {"PositionsStyle": _LENGTH, "LatticeStyle": _LENGTH, "EnergyStyle": _ENERGY,
          "ForcesStyle": _FORCES, "StressStyle": _STRESS,
          "AtomTypeStyle": {"chemicalsymbol": 1.0}}


def load_json(path: Path):
    """Parse a JSON file whose first lines may be ``#`` comments (FitSNAP writes one)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ReadError(path, f"cannot read file ({err})", field="file") from err
    lines = text.split("\n")
    k = 0
    while k < len(lines) and lines[k].lstrip().startswith("#"):
        k += 1
    body = "\n".join(lines[k:]) if k else text
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ReadError(path, f"not valid JSON: {err.msg} at line {err.lineno + k}",
                        field="file") from err


def is_fitsnap(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("Dataset"), dict)


def _factors(path: Path, dataset: dict, styles: dict | None) -> dict[str, float]:
    given = {**{k: v for k, v in dataset.items() if k.endswith("Style")}, **(styles or {})}
    out = {}
    for key, table in STYLES.items():
        if key not in given:
            raise ReadError(path, f"unit style missing; pass styles={{'{key}': ...}} to state "
                                  f"it (known: {sorted(table)})", field=key)
        name = str(given[key]).strip().lower()
        if name not in table:
            raise ReadError(path, f"unknown unit style {given[key]!r}; known: "
                                  f"{sorted(table)}", field=key)
        out[key] = table[name]
    return out


def _field(rec: dict, key: str, path, frame, required: bool = True):
    if key not in rec:
        if required:
            raise ReadError(path, "missing", frame=frame, field=key)
        return None
    try:
        return np.asarray(rec[key], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ReadError(path, f"not numeric ({err})", frame=frame, field=key) from err


def _numbers(rec: dict, path, frame) -> np.ndarray:
    types = rec.get("AtomTypes")
    if not isinstance(types, list):
        raise ReadError(path, "missing or not a list of symbols", frame=frame,
                        field="AtomTypes")
    try:
        return np.array([atomic_numbers[t] for t in types], dtype=np.int64)
    except (KeyError, TypeError) as err:
        raise ReadError(path, f"unknown element {err}", frame=frame, field="AtomTypes") from err


def fitsnap_structures(path: Path, obj, *, group: str = "default", index=":",
                       styles: dict | None = None, require=()) -> list[Structure]:
    """Structures from an already parsed FitSNAP JSON object ``obj`` of file ``path``."""
    if not is_fitsnap(obj):
        raise ReadError(path, "not a FitSNAP JSON file (no 'Dataset' object)", field="Dataset")
    dataset = obj["Dataset"]
    data = dataset.get("Data")
    if not isinstance(data, list):
        raise ReadError(path, "missing or not a list", field="Dataset.Data")
    f = _factors(path, dataset, styles)
    frames = list(range(len(data)))
    if index not in (":", None):
        sel = index if not isinstance(index, str) else _str_index(index)
        frames = frames[sel] if isinstance(sel, slice) else [frames[sel]]
    out = []
    for frame in frames:
        rec = data[frame]
        if not isinstance(rec, dict):
            raise ReadError(path, "record is not an object", frame=frame)
        numbers = _numbers(rec, path, frame)
        if "NumAtoms" in rec and int(rec["NumAtoms"]) != len(numbers):
            raise ReadError(path, f"NumAtoms={rec['NumAtoms']} but {len(numbers)} AtomTypes",
                            frame=frame, field="NumAtoms")
        energy = _field(rec, "Energy", path, frame, required=False)
        forces = _field(rec, "Forces", path, frame, required=False)
        stress = _field(rec, "Stress", path, frame, required=False)
        s = make_structure(
            path, frame,
            numbers=numbers,
            positions=_field(rec, "Positions", path, frame) * f["PositionsStyle"],
            cell=_field(rec, "Lattice", path, frame) * f["LatticeStyle"],
            pbc=True,
            energy=None if energy is None else energy * f["EnergyStyle"],
            forces=None if forces is None else forces * f["ForcesStyle"],
            stress=None if stress is None else -stress * f["StressStyle"],  # pressure -> ASE
            group=group, name=f"{path.name}:{frame}",
        )
        require_labels(s, require, path, frame)
        out.append(s)
    return out


def _str_index(index: str):
    from ase.io.formats import string2index

    return string2index(index)


def read_fitsnap_json(path, *, group: str = "default", index=":", styles: dict | None = None,
                      require=()) -> list[Structure]:
    """Read one FitSNAP JSON file (usually one configuration) into structures.

    ``styles`` overrides or supplies ``*Style`` unit names. Stress comes out in ASE's sign.
    """
    path = Path(path)
    return fitsnap_structures(path, load_json(path), group=group, index=index, styles=styles,
                              require=check_require(require))


def read_fitsnap_folder(root, *, styles: dict | None = None, require=()) -> list[Structure]:
    """Read a FitSNAP training folder: each subfolder is a group of ``*.json`` files.

    The group of every structure is the name of its subfolder; JSON files directly inside
    ``root`` get the group named after ``root``. Files are read in sorted order.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReadError(root, "not a folder", field="file")
    require = check_require(require)
    out = []
    files = [(root.name, p) for p in sorted(root.glob("*.json"))]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files += [(sub.name, p) for p in sorted(sub.glob("*.json"))]
    if not files:
        raise ReadError(root, "no *.json files in the folder or its subfolders", field="file")
    for group, p in files:
        out += fitsnap_structures(p, load_json(p), group=group, styles=styles, require=require)
    return out
