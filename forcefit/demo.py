"""``forcefit demo``: a small Cu dataset made with ASE's EMT calculator, and its fit.

Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE sign), as everywhere in forcefit.

The dataset (:func:`make_cu_dataset`) is a set of fcc Cu supercells (32 and 108 atoms) at EMT's
lattice constant a0 = 3.59 A (the EMT equilibrium), each either

- rattled: Gaussian displacements with sigma drawn from {0.05, 0.10, 0.15} A, or
- strained: a random symmetric strain with every component within +-3 %, then a 0.05 A rattle,
- scaled: an isotropic volume scale between 0.94 and 1.06 (lattice constant 0.98-1.02 a0), then
  a 0.03 A rattle,

labelled with EMT energies, forces and stresses. One seed gives the whole set.
"""

from __future__ import annotations

import numpy as np

from .structure import Structure

__all__ = ["CU_A0", "default_demo_config", "make_cu_dataset"]

#: EMT's equilibrium fcc lattice constant of Cu (Angstrom).
CU_A0 = 3.59


def _cu_cell(size: int):
    from ase.build import bulk

    return bulk("Cu", "fcc", a=CU_A0, cubic=True).repeat((size, size, size))


def make_cu_dataset(n: int = 100, *, seed: int = 0, sizes: tuple[int, ...] = (2, 3),
                    kinds: tuple[str, ...] = ("rattle", "strain", "scale")) -> list[Structure]:
    """``n`` Cu configurations labelled by EMT, cycling through ``kinds`` and cell ``sizes``
    (2 -> 32 atoms, 3 -> 108 atoms). Group = kind; name = ``cu_emt:<index>``."""
    from ase.calculators.emt import EMT

    if n < 1:
        raise ValueError(f"make_cu_dataset: n must be >= 1, got {n}")
    unknown = set(kinds) - {"rattle", "strain", "scale"}
    if unknown:
        raise ValueError(f"make_cu_dataset: unknown kind(s) {sorted(unknown)}; "
                         "choose from rattle, strain, scale")
    rng = np.random.default_rng(seed)
    calc = EMT()
    out = []
    for k in range(n):
        kind = kinds[k % len(kinds)]
        size = sizes[(k // len(kinds)) % len(sizes)]
        atoms = _cu_cell(size)
        if kind == "rattle":
            sigma = float(rng.choice([0.05, 0.10, 0.15]))
            info = {"sigma_A": sigma}
        elif kind == "strain":
            e = rng.uniform(-0.03, 0.03, size=(3, 3))
            e = 0.5 * (e + e.T)  # (3, 3) symmetric strain
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + e), scale_atoms=True)
            sigma = 0.05
            info = {"strain": e.ravel().tolist()}
        else:
            scale = float(rng.uniform(0.94, 1.06))
            atoms.set_cell(atoms.cell.array * scale ** (1 / 3), scale_atoms=True)
            sigma = 0.03
            info = {"volume_scale": scale}
        atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
        atoms.calc = calc
        out.append(Structure.from_ase(
            atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
            stress=atoms.get_stress(voigt=False), group=kind, name=f"cu_emt:{k}"))
        out[-1].info.update(info, config_type=kind)
    return out


def default_demo_config(data_file: str, output: str, *, epochs: int = 150,
                        max_time: float | None = 150.0) -> dict:
    """The config table of the demo fit (a TOML-shaped dict; see :mod:`forcefit.config`)."""
    return {
        "data": {"paths": [data_file], "group_key": "config_type"},
        "descriptors": {"cutoff": 4.5, "n_radial": 8, "n_angular": 8},
        "model": {"layer_sizes": "num_desc 32 32 1", "activation": "silu",
                  "multi_element_option": 1},
        "training": {"learning_rate": 5e-3, "num_epochs": epochs, "batch_size": 8,
                     "energy_weight": 1.0, "force_weight": 1.0, "stress_weight": 0.0,
                     "training_fraction": 0.8, "manual_seed": 0, "patience": 30,
                     "max_time": max_time},
        "output": {"folder": output},
    }
