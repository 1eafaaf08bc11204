"""Tests of forcefit.descriptors: analytic derivatives against autograd and finite
differences, the physics kit, DScribe, a naive reference, miniff's tutorial, the RuNNer
reader, the dataset entry point and bad input. Units: Angstrom, dimensionless descriptors."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from forcefit import Structure, build_graph
from forcefit.descriptors import (
    DescriptorError,
    DescriptorSet,
    angular_grid,
    compute_dataset,
    contract,
    cutoff_function,
    from_runner,
    radial_grid,
    read_runner_symfunctions,
)
from forcefit.potentials.base import evaluate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
F64 = torch.float64

G2 = [[0.5, 0.0], [1.2, 2.0], [0.3, 3.1]]
G4 = [[0.01, 1.0, 1.0], [0.05, 2.0, -1.0], [0.01, 4.0, -1.0], [0.2, 1.0, -1.0]]
G5 = [[0.02, 1.0, -1.0], [0.0, 2.0, 1.0], [0.1, 3.0, 1.0]]
SIG = [[2.0, 0.3], [3.5, 0.5]]


def full_set(species, cutoff=3.8, kind="cosine", **kw):
    return DescriptorSet(cutoff, species, g1=True, g2=G2, sigmoid=SIG, g4=G4, g5=G5,
                         cutoff_function=kind, **kw)


def cu_cell(reps=(1, 1, 1), seed=0, amp=0.08):
    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    at.rattle(amp, seed=seed)
    return Structure.from_ase(at)


def cuni_cell(seed=1):
    s = cu_cell((1, 1, 2), seed=seed)
    rng = np.random.default_rng(seed)
    s.numbers[rng.choice(len(s), size=len(s) // 2, replace=False)] = 28
    return s


def ethanol(seed=0):
    at = molecule("CH3CH2OH")
    at.rattle(0.05, seed=seed)
    return Structure.from_ase(at)


def water_dimer():
    at = molecule("H2O")
    at2 = molecule("H2O")
    at2.translate([2.6, 0.4, 0.3])
    at.extend(at2)
    at.rattle(0.03, seed=3)
    return Structure.from_ase(at)


class LinearEnergyOfDescriptors(torch.nn.Module):
    """Energy model over a DescriptorSet for the physics kit:
    e_i = w . D_i + 0.1 (u . D_i)^2 (the square makes dE/dD depend on D)."""

    def __init__(self, dset: DescriptorSet, seed: int = 0):
        super().__init__()
        self.dset = dset
        self.cutoff = dset.cutoff
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dset.n_features, generator=g, dtype=F64) * 0.1)
        self.u = torch.nn.Parameter(torch.randn(dset.n_features, generator=g, dtype=F64) * 0.1)

    def forward(self, graph, vectors):
        d = self.dset.values(graph, vectors)  # (atoms, F)
        return d @ self.w + 0.1 * (d @ self.u) ** 2

    def de_dd(self, d):
        return self.w + 0.2 * (d @ self.u)[:, None] * self.u  # (atoms, F)


# --------------------------------------------------------------------- derivatives
CASES = {
    "cu_periodic_small_cell": (lambda: cu_cell(), [29]),
    "cuni_periodic": (cuni_cell, [28, 29]),
    "ethanol_open": (ethanol, [1, 6, 8]),
}


def _backend(name):
    """Skip the numba backend's runs where numba is not installed."""
    if name == "numba":
        pytest.importorskip("numba")
    return name


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("kind", ["cosine", "polynomial"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_derivatives_equal_autograd(case, kind, backend):
    make, species = CASES[case]
    s = make()
    ds = full_set(species, kind=kind, backend=_backend(backend))
    g = build_graph(s, ds.cutoff)
    d, dd = ds.compute(g)
    vec = g.edge_vectors().requires_grad_(True)
    dv = ds.values(g, vec)
    torch.testing.assert_close(dv.detach(), d, rtol=1e-12, atol=1e-13)
    # D_i depends only on edges centred on i, so grad of sum_i D[i, f] in r_e is dD[e, f]
    jac = torch.stack([torch.autograd.grad(dv[:, f].sum(), vec, retain_graph=True)[0]
                       for f in range(ds.n_features)], dim=1)  # (edges, F, 3)
    scale = dd.abs().amax(dim=(0, 2), keepdim=True).clamp(min=1e-30)  # per feature
    err = ((jac - dd).abs() / scale).max().item()
    assert err < 1e-10, f"analytic vs autograd derivatives: max relative error {err:.3e}"
    assert dd.abs().sum() > 0 and torch.isfinite(dd).all()


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_derivatives_equal_central_differences(case, backend):
    make, species = CASES[case]
    s = make()
    ds = full_set(species, kind="polynomial" if case == "ethanol_open" else "cosine",
                  backend=_backend(backend))
    g = build_graph(s, ds.cutoff)
    vec = g.edge_vectors()
    _, dd = ds.compute(g)
    rng = np.random.default_rng(0)
    h = 1e-5
    worst = 0.0
    for e in rng.choice(vec.shape[0], size=4, replace=False):
        i = int(g.i[e])
        for a in range(3):
            vp, vm = vec.clone(), vec.clone()
            vp[e, a] += h
            vm[e, a] -= h
            fd = (ds.compute(g, False, vectors=vp)[0][i] - ds.compute(g, False, vectors=vm)[0][i])
            fd = fd / (2 * h)  # (F,)
            scale = dd[:, :, a].abs().max(dim=0).values.clamp(min=1e-12)
            worst = max(worst, ((fd - dd[e, :, a]).abs() / scale).max().item())
    assert worst < 1e-7, f"central differences vs analytic: max relative error {worst:.3e}"


def test_gradcheck_values_float64():
    s = cuni_cell()
    ds = DescriptorSet(3.2, [28, 29], g2=[[1.0, 1.0]], g4=[[0.1, 2.0, -1.0]],
                       g5=[[0.05, 1.0, 1.0]], sigmoid=[[2.5, 0.2]])
    g = build_graph(s, ds.cutoff)
    vec = g.edge_vectors().detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ds.values(g, v), (vec,), eps=1e-6, atol=1e-7,
                                    fast_mode=True)


def test_contract_equals_autograd_forces_and_stress():
    s = cuni_cell(seed=4)
    model = LinearEnergyOfDescriptors(full_set([28, 29]))
    g = build_graph([s, cu_cell(seed=5)], model.cutoff)
    ref = evaluate(model, g)
    d, dd = model.dset.compute(g)
    vec = g.edge_vectors()
    forces, dedeps = contract(model.de_dd(d).detach(), dd, g, vec)
    torch.testing.assert_close(forces, ref["forces"], rtol=1e-10, atol=1e-12)
    vol = torch.linalg.det(g.cell).abs()[:, None, None]
    stress = 0.5 * (dedeps + dedeps.transpose(1, 2)) / vol
    torch.testing.assert_close(stress, ref["stress"], rtol=1e-10, atol=1e-12)
    # float32 storage of the derivatives: same forces to float32 precision
    f32, _ = contract(model.de_dd(d).detach(), dd.float(), g, vec)
    torch.testing.assert_close(f32, forces, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- physics kit
def test_physics_kit_periodic_two_species():
    testing = pytest.importorskip("forcefit.testing")
    s = cuni_cell(seed=2)
    model = LinearEnergyOfDescriptors(full_set([28, 29], cutoff=3.6))
    done = testing.run_physics_kit(model, s, skip=("gradcheck",))
    assert {"invariances", "supercell", "forces_fd", "stress_fd"} <= set(done)


def test_physics_kit_open_molecule_and_gradcheck():
    testing = pytest.importorskip("forcefit.testing")
    s = water_dimer()
    ds = DescriptorSet(3.0, [1, 8], g2=[[0.8, 1.0]], g4=[[0.1, 2.0, -1.0]],
                       g5=[[0.05, 1.0, 1.0]], cutoff_function="polynomial")
    model = LinearEnergyOfDescriptors(ds)
    done = testing.run_physics_kit(model, s)
    assert "gradcheck" in done and "invariances" in done


def test_supercell_features_are_replicated():
    s = cuni_cell(seed=7)
    ds = full_set([28, 29])
    d1, _ = ds.compute(build_graph(s, ds.cutoff))
    big = Structure.from_ase(s.to_ase(labels=False).repeat((2, 1, 2)))
    d4, _ = ds.compute(build_graph(big, ds.cutoff))
    torch.testing.assert_close(d4, d1.repeat(4, 1), rtol=1e-11, atol=1e-12)


def test_edge_order_and_wider_graph_do_not_matter():
    s = cuni_cell(seed=8)
    ds = full_set([28, 29])
    g = build_graph(s, ds.cutoff)
    d, dd = ds.compute(g)
    wide = build_graph(s, ds.cutoff + 1.0)
    dw, ddw = ds.compute(wide)
    torch.testing.assert_close(dw, d, rtol=1e-12, atol=1e-13)
    rw = torch.linalg.vector_norm(wide.edge_vectors(), dim=1)
    assert (ddw[rw >= ds.cutoff] == 0).all()
    torch.testing.assert_close(ddw[rw < ds.cutoff], dd, rtol=1e-12, atol=1e-13)
    perm = torch.randperm(g.i.shape[0], generator=torch.Generator().manual_seed(0))
    gp = type(g)(**{**g.__dict__, "i": g.i[perm], "j": g.j[perm], "shift": g.shift[perm],
                    "edge_batch": g.edge_batch[perm]})
    dp, ddp = ds.compute(gp)
    torch.testing.assert_close(dp, d, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ddp, dd[perm], rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------- references
def _naive(ds: DescriptorSet, s: Structure) -> np.ndarray:
    """Direct loops over neighbours (test reference; independent of the vectorised code)."""
    g = build_graph(s, ds.cutoff)
    vec = g.edge_vectors().numpy()
    ii, jj = g.i.numpy(), g.j.numpy()
    sp = {z: n for n, z in enumerate(ds.species)}
    rc = ds.cutoff

    def fc(r):
        return float(cutoff_function(torch.tensor(r, dtype=F64), rc, ds.cutoff_function))

    out = np.zeros((len(s), ds.n_features))
    nrad = ds.n_radial
    pairs = {p: n for n, p in enumerate(ds.species_pairs)}
    for i in range(len(s)):
        nb = np.nonzero(ii == i)[0]
        for e in nb:
            r = np.linalg.norm(vec[e])
            col = sp[int(s.numbers[jj[e]])] * nrad
            vals = ([fc(r)] if ds.g1 else []) + \
                [math.exp(-eta * (r - rs) ** 2) * fc(r) for eta, rs in ds.g2] + \
                [fc(r) / (1 + math.exp((r - r0) / dr)) for r0, dr in ds.sigmoid]
            out[i, col:col + nrad] += vals
        for a, b in itertools.combinations(nb, 2):
            va, vb = vec[a], vec[b]
            ra, rb, rab = np.linalg.norm(va), np.linalg.norm(vb), np.linalg.norm(vb - va)
            cos = va @ vb / (ra * rb)
            pa, pb = sp[int(s.numbers[jj[a]])], sp[int(s.numbers[jj[b]])]
            p = pairs[(min(pa, pb), max(pa, pb))]
            col = ds.n_species * nrad + p * ds.n_angular
            vals = []
            for eta, zeta, lam in ds.g4:
                vals.append(2 ** (1 - zeta) * (1 + lam * cos) ** zeta
                            * math.exp(-eta * (ra**2 + rb**2 + rab**2))
                            * fc(ra) * fc(rb) * (fc(rab) if rab < rc else 0.0))
            for eta, zeta, lam in ds.g5:
                vals.append(2 ** (1 - zeta) * (1 + lam * cos) ** zeta
                            * math.exp(-eta * (ra**2 + rb**2)) * fc(ra) * fc(rb))
            out[i, col:col + ds.n_angular] += vals
    return out


@pytest.mark.parametrize("kind", ["cosine", "polynomial"])
def test_values_equal_naive_loops(kind):
    s = cuni_cell(seed=9)
    ds = full_set([28, 29], cutoff=4.0, kind=kind)
    d, _ = ds.compute(build_graph(s, ds.cutoff))
    ref = _naive(ds, s)
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


def _dscribe_cases():
    at_cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    at_cu.rattle(0.06, seed=11)
    at_cuni = at_cu.copy()
    rng = np.random.default_rng(12)
    at_cuni.numbers[rng.choice(len(at_cuni), size=7, replace=False)] = 28
    cluster = at_cu.copy()
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    cl2 = at_cuni.copy()
    cl2.pbc = False
    cl2.cell = np.zeros((3, 3))
    eth = molecule("CH3CH2OH")
    eth.rattle(0.05, seed=1)
    return {"one_species_periodic": (at_cu, ["Cu"]),
            "two_species_periodic": (at_cuni, ["Cu", "Ni"]),
            "one_species_open": (cluster, ["Cu"]),
            "two_species_open": (cl2, ["Ni", "Cu"]),
            "three_species_open": (eth, ["H", "C", "O"])}


def _numba_installed() -> bool:
    from forcefit.descriptors import _numba

    return _numba.available()


@pytest.mark.parametrize("case", sorted(_dscribe_cases()))
def test_agrees_with_dscribe_acsf(case):
    dscribe = pytest.importorskip("dscribe.descriptors")
    at, species = _dscribe_cases()[case]
    rc = 5.0
    ref = dscribe.ACSF(r_cut=rc, g2_params=G2, g4_params=G4, g5_params=G5, species=species,
                       periodic=bool(at.pbc.any())).create(at)
    backends = ["torch"] + (["numba"] if _numba_installed() else [])
    for backend in backends:  # both kernels against DScribe
        ds = DescriptorSet(rc, species, g1=True, g2=G2, g4=G4, g5=G5, backend=backend)
        d, _ = ds.compute(build_graph(Structure.from_ase(at), rc))
        assert d.shape == ref.shape
        scale = np.abs(ref).max(axis=0, keepdims=True)  # per column
        rel = np.abs(d.numpy() - ref) / np.where(scale > 0, scale, 1.0)
        assert rel.max() < 1e-8, f"{backend}: max relative difference to DScribe {rel.max():.3e}"
    assert np.count_nonzero(scale) > 0.8 * ref.shape[1]  # the comparison is not all zeros


def test_agrees_with_dscribe_on_bise_reference_data():
    dscribe = pytest.importorskip("dscribe.descriptors")
    if not (DATA / "bise_miniff").is_dir():
        pytest.skip(f"reference data not found at {DATA} (needs ../shared/data)")
    io_mod = pytest.importorskip("forcefit.io")
    files = sorted((DATA / "bise_miniff").glob("*.json"))
    if not files:
        pytest.skip("no miniff JSON in bise_miniff")
    try:
        structures = io_mod.read_miniff_json(files[0])
    except Exception as err:  # noqa: BLE001  the io developer owns the reader
        pytest.skip(f"read_miniff_json unavailable: {err}")
    s = structures[0] if isinstance(structures, list) else structures
    rc = 5.0
    g4 = [[0.02, 1.0, 1.0], [0.02, 2.0, -1.0]]
    ref = dscribe.ACSF(r_cut=rc, g2_params=G2, g4_params=g4, species=["Bi", "Se"],
                       periodic=bool(s.pbc.any())).create(s.to_ase(labels=False))
    ds = DescriptorSet(rc, ["Bi", "Se"], g1=True, g2=G2, g4=g4)
    d, _ = ds.compute(build_graph(s, rc))
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("periodic", [False, True])
def test_miniff_tutorial_neighbour_count(periodic):
    """miniff's "Computing descriptors": 100 random points in a unit box, a = 0.3,
    sigmoid with r0 = 10 a, dr = a / 10 equals the direct sum of (1 + cos(pi r / a)) / 2."""
    n, a = 100, 0.3
    r = np.random.default_rng(42).random((n, 3))
    s = Structure(numbers=[1] * n, positions=r, cell=np.eye(3) if periodic else np.zeros((3, 3)),
                  pbc=periodic)
    ds = DescriptorSet(a, [1], sigmoid=[[10 * a, a / 10]])
    d, _ = ds.compute(build_graph(s, a))
    diff = r[:, None, :] - r[None, :, :]  # (n, n, 3)
    if periodic:
        diff -= np.round(diff)  # minimum image (a < 1/2)
    dist = np.linalg.norm(diff, axis=-1)
    np.fill_diagonal(dist, np.inf)
    inside = dist < a
    direct = np.where(inside, (1 + np.cos(np.pi * np.where(inside, dist, 0) / a)) / 2, 0)
    direct = direct.sum(axis=1)
    np.testing.assert_allclose(d[:, 0].numpy(), direct, rtol=0, atol=1e-12)
    assert direct.max() > 1.0


# --------------------------------------------------------------------- cutoff functions
@pytest.mark.parametrize("kind", ["cosine", "polynomial"])
def test_cutoff_functions(kind):
    rc = 4.0
    r = torch.linspace(0.0, 5.0, 501, dtype=F64).requires_grad_(True)
    fc, dfc = cutoff_function(r, rc, kind, derivative=True)
    (auto,) = torch.autograd.grad(fc.sum(), r)
    torch.testing.assert_close(dfc, auto, rtol=1e-12, atol=1e-12)
    assert fc[0].item() == pytest.approx(1.0)
    assert (fc[r >= rc] == 0).all() and (dfc[r >= rc] == 0).all()
    near = torch.tensor([rc - 1e-4], dtype=F64)
    f_near, d_near = cutoff_function(near, rc, kind, derivative=True)
    assert abs(f_near.item()) < 1e-7 and abs(d_near.item()) < 1e-3
    assert (torch.diff(fc.detach()[r.detach() < rc]) <= 1e-15).all()  # monotone
    with pytest.raises(ValueError, match="unknown kind"):
        cutoff_function(r, rc, "tanh")


# --------------------------------------------------------------------- layout and config
def test_layout_names_and_config_roundtrip():
    ds = full_set(["Ni", "Cu", "O"])
    assert ds.species == [8, 28, 29]
    assert ds.n_features == 3 * ds.n_radial + 6 * ds.n_angular == len(ds.feature_names)
    assert len(set(ds.feature_names)) == ds.n_features
    g4 = ds.layout(family="G4", species=("Cu", "O"))
    assert len(g4) == len(G4) and all(c["species"] == (8, 29) for c in g4)
    assert g4[1]["zeta"] == 2.0 and g4[1]["lambda"] == -1.0 and g4[1]["eta"] == 0.05
    assert ds.layout(family="G2", species="Ni")[2]["rs"] == 3.1
    assert ds.feature_names[g4[0]["index"]].startswith("G4[O-Cu]")
    import json
    again = DescriptorSet.from_config(json.loads(json.dumps(ds.to_config())))
    assert again == ds and again.feature_names == ds.feature_names
    assert hash(again) == hash(ds) and again != full_set(["Ni", "Cu"])
    with pytest.raises(DescriptorError, match="unknown keys"):
        DescriptorSet.from_config({**ds.to_config(), "g7": []})


def test_grids():
    rows = radial_grid(6.0, 5, "centred", r_min=1.0)
    assert [rs for _, rs in rows] == [0.0] * 5
    np.testing.assert_allclose([1 / math.sqrt(2 * e) for e, _ in rows], np.linspace(1, 6, 5))
    rows = radial_grid(6.0, 6, "shifted", r_min=1.0)
    np.testing.assert_allclose([rs for _, rs in rows], np.linspace(1, 6, 6))
    assert len({e for e, _ in rows}) == 1 and rows[0][0] == pytest.approx(0.5)
    ang = angular_grid(cutoff=6.0, n_eta=2)
    assert len(ang) == 16 and {z for _, z, _ in ang} == {1, 2, 4, 16}
    assert {lam for _, _, lam in ang} == {-1.0, 1.0}
    ds = DescriptorSet(6.0, [29], g2=radial_grid(6.0, 8), g4=ang)
    assert ds.n_features == 24
    with pytest.raises(DescriptorError, match="r_min"):
        radial_grid(6.0, 4, r_min=7.0)


# --------------------------------------------------------------------- RuNNer / n2p2
RUNNER = """\
# n2p2 style input.nn excerpt
cutoff_type 1
symfunction_short Cu 2 Cu 0.001 0.0 12.0
symfunction_short Cu 2 Ni 0.001 0.0 12.0   ! same parameters, other neighbour
symfunction_short Ni 2 Cu 0.02 4.0 12.0
symfunction_short Cu 3 Cu Ni 0.0 -1.0 2.0 12.0
symfunction_short Cu 9 Ni Ni 0.01 1.0 4.0 12.0 0.0
global_symfunction_short 2 0.0 0.0 12.0
element_symfunction_short Ni 3 0.005 1.0 1.0 12.0
"""


def test_runner_reader(tmp_path):
    path = tmp_path / "input.nn"
    path.write_text(RUNNER)
    funcs, kind = read_runner_symfunctions(path)
    assert kind == "cosine" and len(funcs) == 7
    assert funcs[3].family == "G4" and funcs[3].neighbours == (29, 28)
    assert funcs[3].params == {"eta": 0.0, "zeta": 2.0, "lambda": -1.0, "rs": 0.0}
    assert funcs[5].centre is None and funcs[6].centre == 28 and funcs[6].neighbours is None
    bohr = 0.52917721
    ds = from_runner(path, length_unit=bohr)
    assert ds.cutoff == pytest.approx(12.0 * bohr) and ds.species == [28, 29]
    assert ds.g1  # eta = 0 radial line
    assert ds.g2 == [(pytest.approx(0.001 / bohr**2), 0.0), (pytest.approx(0.02 / bohr**2),
                                                              pytest.approx(4.0 * bohr))]
    assert [r[1:] for r in ds.g4] == [(2.0, -1.0), (1.0, 1.0)] and len(ds.g5) == 1
    # the set computes on a structure
    d, dd = ds.compute(build_graph(cuni_cell(), ds.cutoff))
    assert torch.isfinite(dd).all() and d.shape[1] == ds.n_features


@pytest.mark.parametrize("line,match", [
    ("symfunction_short Cu 5 Cu 0.1 0.0 6.0", "type 5 is not supported"),
    ("symfunction_short Cu 2 Cu 0.1 6.0", "expects 3 numbers"),
    ("symfunction_short Xx 2 Cu 0.1 0.0 6.0", "unknown element 'Xx'"),
    ("symfunction_short Cu 2 Cu abc 0.0 6.0", "field eta: not a number"),
    ("symfunction_short Cu 2 Cu -0.1 0.0 6.0", "field eta: must be >= 0"),
    ("cutoff_type 2", "cutoff_type 2"),
])
def test_runner_reader_errors_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.nn"
    path.write_text("# header\n" + line + "\n")
    with pytest.raises(DescriptorError, match=match) as err:
        read_runner_symfunctions(path)
    assert f"{path}:2" in str(err.value)


def test_runner_mixed_cutoffs_refused():
    text = "symfunction_short Cu 2 Cu 0.1 0.0 6.0\nsymfunction_short Cu 2 Cu 0.1 0.0 5.0\n"
    with pytest.raises(DescriptorError, match="different cutoffs.*<text>:2"):
        from_runner(text)


# --------------------------------------------------------------------- dataset entry point
def test_compute_dataset_matches_compute_and_prints_estimate():
    structures = [cuni_cell(seed=k) for k in range(3)] + [ethanol().copy()]
    structures[-1].numbers[structures[-1].numbers == 1] = 28  # only known species
    structures[-1].numbers[structures[-1].numbers == 6] = 29
    structures[-1].numbers[structures[-1].numbers == 8] = 29
    ds = full_set([28, 29])
    out = io.StringIO()
    data = compute_dataset(ds, structures, chunk_atoms=20, progress=False, stream=out,
                           derivative_dtype=torch.float32)
    text = out.getvalue()
    assert "4 structures" in text and "MiB" in text or "KiB" in text
    assert data.derivatives.dtype == torch.float32 and data.values.dtype == torch.float64
    for k, s in enumerate(structures):
        d, dd = ds.compute(build_graph(s, ds.cutoff))
        v_k, dd_k = data.structure(k)
        torch.testing.assert_close(v_k, d, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(dd_k, dd.float(), rtol=1e-6, atol=1e-7)
    g = data.graph
    assert g.i.shape[0] == data.derivatives.shape[0] == int(data.edge_offsets[-1])
    with pytest.raises(MemoryError, match="max_bytes"):
        compute_dataset(ds, structures, progress=False, stream=io.StringIO(), max_bytes=1000)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    ({"cutoff": 0.0}, "cutoff must be positive"),
    ({"cutoff": -2.0}, "cutoff must be positive"),
    ({"g2": [[0.0, 1.0]]}, r"G2\[0\]: eta must be positive"),
    ({"g2": [[-1.0, 1.0]]}, r"G2\[0\]: eta must be positive"),
    ({"g4": [[-0.1, 1.0, 1.0]]}, r"G4\[0\]: eta must be >= 0"),
    ({"g5": [[0.1, 0.5, 1.0]]}, r"G5\[0\]: zeta must be >= 1"),
    ({"g4": [[0.1, 1.0, 0.5]]}, r"G4\[0\]: lambda must be -1 or \+1"),
    ({"sigmoid": [[1.0, 0.0]]}, r"sigmoid\[0\]: dr must be positive"),
    ({"g2": [[1.0]]}, r"G2\[0\]: expected 2 numbers"),
    ({"cutoff_function": "tanh"}, "cutoff_function"),
    ({"species": ["Qq"]}, "unknown element symbol 'Qq'"),
    ({"g2": []}, "no functions"),
])
def test_bad_parameters(kwargs, match):
    args = {"cutoff": 4.0, "species": [29], "g2": [[1.0, 0.0]], **kwargs}
    with pytest.raises(DescriptorError, match=match):
        DescriptorSet(args.pop("cutoff"), args.pop("species"), **args)


def test_unknown_species_named_with_structure():
    ds = full_set([29])
    s = cuni_cell()
    s.name = "alloy-7"
    with pytest.raises(DescriptorError, match=r"Ni.*does not know.*Cu"):
        ds.compute(build_graph([cu_cell(), s], ds.cutoff))
    with pytest.raises(DescriptorError, match=r"structure 1 \(alloy-7\): species Ni"):
        compute_dataset(ds, [cu_cell(), s], progress=False, stream=io.StringIO())


def test_overlapping_atoms_are_refused():
    ds = full_set([29])
    s = cu_cell()
    g = build_graph(s, ds.cutoff)
    vec = g.edge_vectors().clone()
    vec[5] = 0.0
    with pytest.raises(DescriptorError, match="overlapping atoms"):
        ds.compute(g, vectors=vec)
    bad = cu_cell()
    bad.positions[3] = bad.positions[1]
    bad.name = "collapsed"
    with pytest.raises(DescriptorError, match=r"structure 1.*overlapping"):
        compute_dataset(ds, [cu_cell(), bad], progress=False, stream=io.StringIO())


def test_graph_with_too_small_cutoff_refused():
    ds = full_set([29])
    with pytest.raises(DescriptorError, match="less than the descriptor cutoff"):
        ds.compute(build_graph(cu_cell(), ds.cutoff - 1.0))


# --------------------------------------------------------------------- example, compiled kernels
def test_miniff_example_script_runs(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "miniff_descriptors.py"
    spec = importlib.util.spec_from_file_location("miniff_descriptors_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--n", "60", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("OK") == 2 and "MISMATCH" not in out


@pytest.mark.slow
def test_compiled_kernels_equal_eager():
    """torch.compile'd pair kernels (opt-in) give the eager results (tens of s to compile)."""
    s = cuni_cell(seed=13)
    eager = full_set([28, 29], backend="torch")
    fast = full_set([28, 29], compiled=True, backend="torch")  # the torch kernels, compiled
    g = build_graph(s, eager.cutoff)
    with _no_compile_warning():
        d_c, dd_c = fast.compute(g)
        v_c = fast.compute(g, derivatives=False)[0]
    d, dd = eager.compute(g)
    torch.testing.assert_close(d_c, d, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(v_c, d, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(dd_c, dd, rtol=1e-12, atol=1e-13)


class _no_compile_warning:
    """Fail if the compiled path fell back to eager (a RuntimeWarning says so)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        bad = [w for w in self._log if "torch.compile failed" in str(w.message)]
        if bad:
            pytest.skip(f"no working torch.compile backend here: {bad[0].message}")
        return False


def test_float32_isolated_atom_and_empty_batch():
    ds = full_set([28, 29])
    s = cuni_cell(seed=14)
    g = build_graph(s, ds.cutoff)
    d, _ = ds.compute(g)
    d32, dd32 = ds.compute(g.to(dtype=torch.float32))
    assert d32.dtype == torch.float32 and dd32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), d, rtol=1e-4, atol=1e-5 * d.abs().max().item())
    lone = Structure(numbers=[29, 28], positions=[[0, 0, 0], [10, 0, 0]])  # no neighbours
    d0, dd0 = ds.compute(build_graph(lone, ds.cutoff))
    assert d0.shape == (2, ds.n_features) and (d0 == 0).all() and dd0.shape == (0, ds.n_features, 3)
    empty = Structure(numbers=np.zeros(0, dtype=int), positions=np.zeros((0, 3)))
    de, dde = ds.compute(build_graph(empty, ds.cutoff))
    assert de.shape == (0, ds.n_features) and dde.shape == (0, ds.n_features, 3)


# --------------------------------------------------------------------- numba backend
NUMBA_CASES = {
    "cu_periodic_one_species": (lambda: cu_cell((1, 1, 2), seed=21), [29]),
    "cuni_periodic_two_species": (lambda: cuni_cell(seed=22), [28, 29]),
    "water_dimer_open_two_species": (water_dimer, [1, 8]),
    "ethanol_open_three_species": (lambda: ethanol(seed=23), [1, 6, 8]),
}


def _close_rel(a, b, rtol=1e-12):
    """a equals b to rtol relative to the largest entry (entries near 0 cancel)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = max(float(b.abs().max()), 1e-300)
    err = float((a - b).abs().max()) / scale
    assert err < rtol, f"max relative difference {err:.3g} >= {rtol}"


@pytest.mark.parametrize("kind", ["cosine", "polynomial"])
@pytest.mark.parametrize("case", list(NUMBA_CASES))
def test_numba_backend_equals_torch(case, kind):
    """The compiled kernel gives the torch kernels' values and derivatives (1e-12 relative),
    including a non-integer zeta and eta = 0."""
    pytest.importorskip("numba")
    from forcefit.descriptors import _numba

    make, species = NUMBA_CASES[case]
    s = make()
    extra = {"g4": G4 + [[0.03, 2.5, 1.0]], "g5": G5 + [[0.0, 1.5, -1.0]]}
    kw = dict(g1=True, g2=G2, sigmoid=SIG, cutoff_function=kind, **extra)
    ref = DescriptorSet(3.8, species, backend="torch", **kw)
    fast = DescriptorSet(3.8, species, backend="numba", **kw)
    assert not _numba.function_tables(fast.g4, fast.g5)["direct"]  # the column-picking path
    g = build_graph(s, 4.5)  # wider graph: edges beyond the cutoff are dropped by both
    d_t, dd_t = ref.compute(g)
    d_n, dd_n = fast.compute(g)
    assert float(dd_t[:, -ref.n_pairs * ref.n_angular:].abs().max()) > 0
    _close_rel(d_n, d_t)
    _close_rel(dd_n, dd_t)
    _close_rel(fast.compute(g, derivatives=False)[0], ref.compute(g, derivatives=False)[0])
    _close_rel(fast.values(g, g.edge_vectors()), d_t)  # no grad: numba too


@pytest.mark.parametrize("species", [[29], [28, 29]])
def test_numba_backend_grid_rows_equal_torch(species):
    """Rows that form a full (eta x zeta x lambda) grid, in order, take the kernel's direct
    path (no column picking); still the torch numbers, for G4 alone and G4 + G5."""
    pytest.importorskip("numba")
    from forcefit.descriptors import _numba

    s = cuni_cell(seed=27) if len(species) == 2 else cu_cell((1, 1, 2), seed=27)
    g = build_graph(s, 3.8)
    grid = angular_grid(etas=(0.02, 0.3), zetas=(1, 2, 16, 2.5))
    for kw in ({"g4": grid}, {"g2": G2, "g4": grid, "g5": angular_grid(etas=(0.0, 0.1))}):
        assert _numba.function_tables(kw["g4"], kw.get("g5", ()))["direct"]
        ref = DescriptorSet(3.8, species, backend="torch", **kw)
        fast = DescriptorSet(3.8, species, backend="numba", **kw)
        d_t, dd_t = ref.compute(g)
        d_n, dd_n = fast.compute(g)
        _close_rel(d_n, d_t)
        _close_rel(dd_n, dd_t)
        _close_rel(fast.compute(g, derivatives=False)[0], d_t)


def test_numba_cutoff_series_accuracy():
    """The kernel's power series for the cosine cutoff of r_jk (no sqrt, no trig call)
    matches cos and sin to 5e-15 absolute over the whole range, pure Python and compiled."""
    from forcefit.descriptors import _numba

    x = np.linspace(0.0, math.pi, 2001)
    for fn in ([_numba._cos_sinc] + ([] if not _numba.available() else [None])):
        if fn is None:  # the compiled one
            pytest.importorskip("numba")
            _numba._jit()
            fn = _numba._cos_sinc
        got = np.array([fn(v * v) for v in x])  # (points, 2)
        assert np.abs(got[:, 0] - np.cos(x)).max() < 5e-15
        sinc = np.sinc(x / math.pi)  # sin(x) / x, 1 at 0
        assert np.abs(got[:, 1] - sinc).max() < 5e-15
    rc = 3.8
    r = np.array([0.1, 1.0, 2.5, 3.79])
    for kind, code in _numba.CUTOFF_CODES.items():
        fc, dfc = cutoff_function(torch.tensor(r), rc, kind, derivative=True)
        got = np.array([_numba._cut_sq(v * v, rc, code) for v in r])  # (4, 2) fc, fc' / r
        np.testing.assert_allclose(got[:, 0], fc.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(got[:, 1], dfc.numpy() / r, rtol=1e-13, atol=1e-15)


def test_numba_backend_batched_and_float32():
    """Several structures in one graph, and float32 input (computed in float64, cast)."""
    pytest.importorskip("numba")
    structs = [cuni_cell(seed=24), water_dimer(), cu_cell(seed=25)]
    ref = full_set([1, 8, 28, 29], backend="torch")
    fast = full_set([1, 8, 28, 29], backend="numba")
    g = build_graph(structs, ref.cutoff)
    d_t, dd_t = ref.compute(g)
    d_n, dd_n = fast.compute(g)
    _close_rel(d_n, d_t)
    _close_rel(dd_n, dd_t)
    for kw in ({"g1": True, "g2": G2, "sigmoid": SIG}, {"g2": G2}, {"g5": G5}):  # one family
        d_t, dd_t = DescriptorSet(3.8, [1, 8, 28, 29], backend="torch", **kw).compute(g)
        d_n, dd_n = DescriptorSet(3.8, [1, 8, 28, 29], backend="numba", **kw).compute(g)
        _close_rel(d_n, d_t)
        _close_rel(dd_n, dd_t)
    d_t, dd_t = ref.compute(g)
    d32, dd32 = fast.compute(g.to(dtype=torch.float32))
    assert d32.dtype == torch.float32 and dd32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), d_t, rtol=1e-4, atol=1e-5 * float(d_t.abs().max()))
    torch.testing.assert_close(dd32.double(), dd_t, rtol=1e-4,
                               atol=1e-5 * float(dd_t.abs().max()))


def test_backend_selection_and_fallback(monkeypatch):
    """backend='torch' never calls the compiled kernel; autograd always uses torch; without
    numba, 'auto' falls back to torch and 'numba' is refused with a clear error."""
    from forcefit.descriptors import _numba

    with pytest.raises(DescriptorError, match="backend: unknown 'cuda'"):
        full_set([29], backend="cuda")
    s = cu_cell(seed=26)
    ref = full_set([29], backend="torch")
    g = build_graph(s, ref.cutoff)
    d_ref, dd_ref = ref.compute(g)

    def boom(*a, **k):
        raise AssertionError("numba kernel called")

    monkeypatch.setattr(_numba, "angular", boom)
    ref.compute(g)  # torch backend: no call
    auto = full_set([29], backend="auto")
    v = g.edge_vectors().requires_grad_(True)
    e = auto.values(g, v).sum()  # autograd: the torch path, no call
    assert torch.autograd.grad(e, v)[0].shape == v.shape
    monkeypatch.setattr(_numba, "HAVE_NUMBA", False)  # as if numba were not installed
    assert not _numba.available()
    d, dd = auto.compute(g)  # 'auto' falls back to torch: identical
    assert torch.equal(d, d_ref) and torch.equal(dd, dd_ref)
    with pytest.raises(DescriptorError, match="backend 'numba' needs numba"):
        full_set([29], backend="numba")
    assert full_set([29]) == auto  # the backend is not part of the saved configuration
