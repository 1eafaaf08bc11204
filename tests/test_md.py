"""NVE molecular dynamics through ForcefitCalculator conserves energy.

LJ argon (epsilon = 0.0104 eV, sigma = 3.4 A, cutoff 8.5 A, energy shifted to zero at the
cutoff), 256 atoms in a 4x4x4 fcc supercell (a = 5.26 A), velocities from Maxwell-Boltzmann
at 60 K, 1000 velocity-Verlet steps of 2 fs. Units: eV, Angstrom, fs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md import velocitydistribution as vd
from ase.md.verlet import VelocityVerlet

import forcefit.potentials as P
from forcefit.calculator import ForcefitCalculator


@pytest.fixture(autouse=True)
def _one_thread():
    """Single-threaded torch and BLAS: faster for 256 atoms on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            yield
    except ImportError:
        yield
    finally:
        torch.set_num_threads(threads)


def _argon(seed: int = 0):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((4, 4, 4))
    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, 60.0, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=60.0, rng=rng)
    vd.Stationary(atoms)
    return atoms


def test_nve_lj_argon_conserves_energy():
    atoms = _argon()
    assert len(atoms) == 256
    calc = ForcefitCalculator(P.LennardJones(0.0104, 3.4, 8.5, shift=True), skin=0.5)
    atoms.calc = calc
    energies = []
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    start = time.perf_counter()
    dyn.run(1000)
    seconds = time.perf_counter() - start
    energies = np.array(energies)
    drift = np.abs(energies - energies[0]).max() / len(atoms)
    print(f"NVE LJ argon: 256 atoms, 1000 steps in {seconds:.1f} s, max |E - E0| = "
          f"{drift:.2e} eV/atom, {calc.n_builds} neighbour-list builds")
    assert len(energies) == 101
    assert drift < 1e-4
    # the run did something: atoms moved and the kinetic energy exchanged with the potential
    temperature = atoms.get_temperature()
    assert 15.0 < temperature < 60.0
    assert np.ptp(energies) > 0.0
    assert 1 < calc.n_builds < 200  # the Verlet skin was both needed and reused


def test_md_trajectory_matches_ase_lj():
    """20 steps with ForcefitCalculator and with ASE's own LennardJones (same shifted
    potential) give the same trajectory: an independent check of forces along real MD."""
    from ase.calculators.lj import LennardJones as AseLJ

    runs = []
    for calc in (ForcefitCalculator(P.LennardJones(0.0104, 3.4, 8.5, shift=True)),
                 AseLJ(epsilon=0.0104, sigma=3.4, rc=8.5)):
        atoms = _argon(seed=1)
        atoms.calc = calc
        VelocityVerlet(atoms, timestep=2 * units.fs).run(20)
        runs.append((atoms.positions.copy(), atoms.get_total_energy()))
    (pos_a, e_a), (pos_b, e_b) = runs
    assert np.abs(pos_a - pos_b).max() < 1e-10
    assert e_a == pytest.approx(e_b, rel=1e-11)
