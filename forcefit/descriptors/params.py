"""Parameter sets for symmetry functions: grid generators and the RuNNer/n2p2 reader.

Units: cutoff, r_s and radii in Angstrom; eta in 1/Angstrom^2. RuNNer/n2p2 files are often
in Bohr: pass ``length_unit`` (Angstrom per file length unit, e.g. ``ase.units.Bohr``) and
distances are multiplied by it, eta divided by its square.

Grids (Gastegger et al., J. Chem. Phys. 148, 241709 (2018), section II.B; n2p2's
``sfparamgen`` uses the same two recipes), for n radii r_k = r_min + k (rc - r_min)/(n - 1):

- ``"centred"``: r_s = 0, eta_k = 1 / (2 r_k^2) (Gaussians centred on the atom, widths
  spanning the cutoff);
- ``"shifted"``: r_s = r_k, eta = 1 / (2 dr^2) with dr = (rc - r_min) / (n - 1) (equal
  Gaussians shifted across the cutoff).

RuNNer/n2p2 ``input.nn`` lines read by :func:`read_runner_symfunctions` (the first field may
be followed by comments after ``#`` or ``!``)::

    symfunction_short <centre> 1 <neighbour> <rc>
    symfunction_short <centre> 2 <neighbour> <eta> <r_s> <rc>
    symfunction_short <centre> 3 <neighbour1> <neighbour2> <eta> <lambda> <zeta> <rc> [<r_s>]
    symfunction_short <centre> 9 <neighbour1> <neighbour2> <eta> <lambda> <zeta> <rc> [<r_s>]
    element_symfunction_short <centre> <type> <parameters as above without neighbours>
    global_symfunction_short <type> <parameters as above without neighbours>
    cutoff_type <n> [<alpha>]

Type 3 is G4 (the "narrow" angular function), 9 is G5 (the "wide" one); their sums run over
unordered neighbour pairs in RuNNer/n2p2 as here. ``cutoff_type`` 1 is the cosine and 6
n2p2's ``poly2`` (our ``"polynomial"``), both with alpha = 0; others are refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
from ase.data import chemical_symbols

from .acsf import DescriptorError, DescriptorSet

_RUNNER_TYPES = {1: "G1", 2: "G2", 3: "G4", 9: "G5"}
_CUTOFF_TYPES = {1: "cosine", 6: "polynomial"}


def _radii(cutoff: float, n: int, r_min: float) -> np.ndarray:
    if not cutoff > 0:
        raise DescriptorError(f"cutoff must be positive, got {cutoff}")
    if n < 1:
        raise DescriptorError(f"n must be >= 1, got {n}")
    if not 0 < r_min < cutoff:
        raise DescriptorError(f"r_min must lie in (0, cutoff={cutoff}), got {r_min}")
    return np.linspace(r_min, cutoff, n) if n > 1 else np.array([cutoff])


def radial_grid(cutoff: float, n: int, mode: str = "centred", *,
                r_min: float = 0.5) -> list[tuple[float, float]]:
    """n rows (eta [1/A^2], r_s [A]) for G2, ``mode`` "centred" or "shifted" (module doc)."""
    rk = _radii(float(cutoff), int(n), float(r_min))
    if mode in ("centred", "centered"):
        return [(float(1.0 / (2.0 * r * r)), 0.0) for r in rk]
    if mode == "shifted":
        if n < 2:
            raise DescriptorError("shifted grid needs n >= 2")
        dr = (cutoff - r_min) / (n - 1)
        return [(float(1.0 / (2.0 * dr * dr)), float(r)) for r in rk]
    raise DescriptorError(f"radial_grid: unknown mode {mode!r} (centred or shifted)")


def angular_grid(etas: Sequence[float] | None = None, zetas: Sequence[float] = (1, 2, 4, 16),
                 lambdas: Sequence[float] = (-1.0, 1.0), *, cutoff: float | None = None,
                 n_eta: int | None = None, r_min: float = 0.5) -> list[tuple[float, ...]]:
    """Rows (eta, zeta, lambda) for G4/G5: every combination, eta slowest, lambda fastest.

    Give ``etas`` explicitly, or ``cutoff`` and ``n_eta`` for the centred recipe
    eta_k = 1 / (2 r_k^2) (module doc).
    """
    if etas is None:
        if cutoff is None or n_eta is None:
            raise DescriptorError("angular_grid: give etas, or cutoff and n_eta")
        etas = [1.0 / (2.0 * r * r) for r in _radii(float(cutoff), int(n_eta), float(r_min))]
    return [(float(e), float(z), float(lam)) for e in etas for z in zetas for lam in lambdas]


@dataclasses.dataclass(frozen=True)
class RunnerFunction:
    """One symmetry function line of a RuNNer/n2p2 file (distances already in Angstrom).

    ``centre`` and ``neighbours`` are atomic numbers; None means "every species".
    ``params`` holds eta, r_s (G2) or eta, zeta, lambda, r_s (G4, G5).
    """

    where: str
    centre: int | None
    family: str
    neighbours: tuple[int, ...] | None
    params: dict
    cutoff: float


def _element(tok: str, where: str) -> int:
    if tok not in chemical_symbols[1:]:
        raise DescriptorError(f"{where}: unknown element {tok!r}")
    return chemical_symbols.index(tok)


def _number(tok: str, where: str, field: str) -> float:
    try:
        x = float(tok.replace("d", "e").replace("D", "E"))
    except ValueError:
        raise DescriptorError(f"{where}: field {field}: not a number: {tok!r}") from None
    if not math.isfinite(x):
        raise DescriptorError(f"{where}: field {field}: not finite: {tok!r}")
    return x


def _parse_function(keyword: str, toks: list[str], where: str, unit: float) -> RunnerFunction:
    centre = None
    if keyword in ("symfunction_short", "element_symfunction_short"):
        if not toks:
            raise DescriptorError(f"{where}: missing the centre element")
        centre = _element(toks.pop(0), where)
    if not toks:
        raise DescriptorError(f"{where}: missing the function type")
    try:
        ftype = int(toks.pop(0))
    except ValueError:
        raise DescriptorError(f"{where}: field type: not an integer") from None
    if ftype not in _RUNNER_TYPES:
        raise DescriptorError(f"{where}: function type {ftype} is not supported "
                              f"(supported: {sorted(_RUNNER_TYPES)})")
    family = _RUNNER_TYPES[ftype]
    n_nb = {"G1": 1, "G2": 1, "G4": 2, "G5": 2}[family]
    neighbours = None
    if keyword == "symfunction_short":
        if len(toks) < n_nb:
            raise DescriptorError(f"{where}: expected {n_nb} neighbour element(s)")
        neighbours = tuple(_element(toks.pop(0), where) for _ in range(n_nb))
    names = {"G1": ["rc"], "G2": ["eta", "rs", "rc"],
             "G4": ["eta", "lambda", "zeta", "rc", "rs"],
             "G5": ["eta", "lambda", "zeta", "rc", "rs"]}[family]
    required = len(names) - (1 if family in ("G4", "G5") else 0)
    if not required <= len(toks) <= len(names):
        raise DescriptorError(f"{where}: type {ftype} expects {required} numbers "
                              f"({', '.join(names[:required])}), got {len(toks)}")
    vals = {k: _number(t, where, k) for k, t in zip(names, toks)}
    rc = vals.pop("rc") * unit
    if not rc > 0:
        raise DescriptorError(f"{where}: field rc: cutoff must be positive, got {rc}")
    params = {}
    if "eta" in vals:
        if vals["eta"] < 0:
            raise DescriptorError(f"{where}: field eta: must be >= 0, got {vals['eta']}")
        params["eta"] = vals["eta"] / unit**2
    if family == "G2":
        params["rs"] = vals["rs"] * unit
    if family in ("G4", "G5"):
        params["zeta"] = vals["zeta"]
        params["lambda"] = vals["lambda"]
        params["rs"] = vals.get("rs", 0.0) * unit
    return RunnerFunction(where, centre, family, neighbours, params, rc)


def _lines(source) -> tuple[str, Iterable[str]]:
    if isinstance(source, (str, os.PathLike)) and "\n" not in str(source):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as fh:
                return path, fh.read().splitlines()
        except OSError as err:
            raise DescriptorError(f"{path}: cannot read ({err.strerror})") from None
    if isinstance(source, str):
        return "<text>", source.splitlines()
    return "<lines>", list(source)


def read_runner_symfunctions(source, *, length_unit: float = 1.0):
    """Parse a RuNNer/n2p2 file (path), text or list of lines.

    Returns (functions: list[RunnerFunction], cutoff_function: str | None). Errors are
    :class:`DescriptorError` naming file, line and field. ``length_unit`` converts the
    file's distances to Angstrom (module doc).
    """
    name, lines = _lines(source)
    unit = float(length_unit)
    if not unit > 0:
        raise DescriptorError(f"length_unit must be positive, got {length_unit}")
    funcs: list[RunnerFunction] = []
    cut_kind = None
    for n, raw in enumerate(lines, start=1):
        line = raw.split("#")[0].split("!")[0].strip()
        if not line:
            continue
        toks = line.split()
        key = toks[0].lower()
        where = f"{name}:{n}"
        if key in ("symfunction_short", "element_symfunction_short",
                   "global_symfunction_short"):
            funcs.append(_parse_function(key, toks[1:], where, unit))
        elif key == "cutoff_type":
            if len(toks) < 2:
                raise DescriptorError(f"{where}: cutoff_type needs a value")
            try:
                ctype = int(toks[1])
            except ValueError:
                raise DescriptorError(f"{where}: cutoff_type: not an integer") from None
            alpha = _number(toks[2], where, "alpha") if len(toks) > 2 else 0.0
            if ctype not in _CUTOFF_TYPES or alpha != 0.0:
                raise DescriptorError(f"{where}: cutoff_type {ctype} (alpha {alpha}) is not "
                                      "supported: use 1 (cosine) or 6 (poly2), alpha 0")
            cut_kind = _CUTOFF_TYPES[ctype]
    if not funcs:
        raise DescriptorError(f"{name}: no symfunction_short lines found")
    return funcs, cut_kind


def from_runner(source, *, species: Sequence[int | str] | None = None,
                length_unit: float = 1.0, cutoff_function: str | None = None) -> DescriptorSet:
    """A :class:`DescriptorSet` from RuNNer/n2p2 symmetry-function lines.

    The set holds every distinct (family, parameters) of the file, each computed for every
    neighbour species (pair) and for every centre: a superset of a file that lists
    functions per element combination (the extra columns are for the fit to ignore or use).
    All functions must share one cutoff, and angular r_s must be 0; otherwise the error
    names the lines. ``species`` defaults to every element the file names.
    """
    funcs, kind = read_runner_symfunctions(source, length_unit=length_unit)
    cutoffs = sorted({round(f.cutoff, 12) for f in funcs})
    if len(cutoffs) > 1:
        first = {c: next(f.where for f in funcs if round(f.cutoff, 12) == c) for c in cutoffs}
        raise DescriptorError("symmetry functions with different cutoffs are not supported: "
                              + ", ".join(f"{c:g} A at {w}" for c, w in first.items()))
    rows: dict[str, list] = {"G2": [], "G4": [], "G5": []}
    g1 = False
    elements: set[int] = set()
    for f in funcs:
        elements.update([f.centre] if f.centre else [])
        elements.update(f.neighbours or ())
        if f.family == "G1":
            g1 = True
            continue
        if f.family == "G2":
            row = (f.params["eta"], f.params["rs"])
            if f.params["eta"] == 0:
                g1 = True  # eta = 0, any r_s: exp(0) = 1, this is G1
                continue
        else:
            if f.params["rs"] != 0:
                raise DescriptorError(f"{f.where}: angular r_s = {f.params['rs']} is not "
                                      "supported (only 0)")
            row = (f.params["eta"], f.params["zeta"], f.params["lambda"])
        if row not in rows[f.family]:
            rows[f.family].append(row)
    if species is None:
        if not elements:
            raise DescriptorError("from_runner: the file names no element; pass species=")
        species = sorted(elements)
    return DescriptorSet(cutoffs[0], species, g1=g1, g2=rows["G2"], g4=rows["G4"],
                         g5=rows["G5"], cutoff_function=cutoff_function or kind or "cosine")
