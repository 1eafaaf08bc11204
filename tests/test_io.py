"""Readers and the extxyz writer (forcefit.io).

Units checked: Angstrom, eV, eV/Angstrom, eV/Angstrom^3 (ASE stress sign); FitSNAP stresses
are bar with the opposite sign; the ethane trajectory is nm and kJ/mol.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ase.io
import ase.units
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

import forcefit.io as fio
from forcefit.io import ReadError, read, write_extxyz
from forcefit.structure import KJ_PER_MOL, Structure, StructureError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need(sub: str) -> Path:
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"reference data {p} is absent (../shared/data next to the repository)")
    return p


def _raw_fitsnap(path: Path) -> dict:
    """Independent parse of one FitSNAP file: drop the first (comment) line."""
    text = path.read_text()
    return json.loads(text[text.index("\n"):])["Dataset"]


# --------------------------------------------------------------------------- FitSNAP
TA_GROUPS = {"Displaced_A15": 9, "Displaced_BCC": 9, "Displaced_FCC": 9, "Elastic_BCC": 100,
             "Elastic_FCC": 100, "GSF_110": 22, "GSF_112": 22, "Liquid": 3, "Surface": 7,
             "Volume_A15": 30, "Volume_BCC": 21, "Volume_FCC": 31}


def test_ta_fitsnap_folder_reads_all_363_with_labels():
    root = need("ta_fitsnap")
    t0 = time.perf_counter()
    structures = read(root, require=("energy", "forces", "stress"))
    elapsed = time.perf_counter() - t0
    assert len(structures) == 363
    assert sum(len(s) for s in structures) == 4224
    counts = {}
    for s in structures:
        counts[s.group] = counts.get(s.group, 0) + 1
        assert s.pbc.all() and s.forces.shape == (len(s), 3) and s.stress.shape == (3, 3)
    assert counts == TA_GROUPS
    assert elapsed < 5.0, f"reading 363 FitSNAP files took {elapsed:.2f} s"
    # values and conversions against an independent parse of a few files
    by_name = {(s.group, s.name): s for s in structures}
    for group, fname in [("Liquid", min(p.name for p in (root / "Liquid").glob("*.json"))), ("Elastic_BCC", "BCC_deformed_3.json"),
                         ("Surface", min(p.name for p in (root / "Surface").glob("*.json")))]:
        raw = _raw_fitsnap(root / group / fname)
        rec = raw["Data"][0]
        s = by_name[(group, f"{fname}:0")]
        assert s.energy == rec["Energy"]
        np.testing.assert_array_equal(s.positions, rec["Positions"])
        np.testing.assert_array_equal(s.cell, rec["Lattice"])
        np.testing.assert_array_equal(s.forces, rec["Forces"])
        assert s.symbols == rec["AtomTypes"]
        # ase.units uses CODATA 2014 (forcefit: 2018): the constants differ by ~1e-8
        np.testing.assert_allclose(s.stress, -np.array(rec["Stress"]) * ase.units.bar,
                                   rtol=1e-7, atol=0)


def test_fitsnap_compressed_bcc_has_negative_ase_stress():
    p = need("ta_fitsnap") / "Volume_BCC" / "BCC_2.2.json"
    (s,) = fio.read_fitsnap_json(p)
    raw = _raw_fitsnap(p)["Data"][0]["Stress"]
    assert raw[0][0] > 0  # FitSNAP/VASP sign: compressive pressure is positive
    assert np.all(np.diag(s.stress) < 0)  # ASE sign: compressed cell -> negative stress
    # 29.9 Mbar = 2993 GPa
    np.testing.assert_allclose(-s.stress[0, 0] / ase.units.GPa, raw[0][0] * 1e-4, rtol=1e-7)


def test_fitsnap_stress_sign_matches_energy_volume_derivative():
    """ASE stress of an isotropic cell: tr(sigma)/3 = dE/dV (sigma = (1/V) dE/d(strain))."""
    structures = sorted(read(need("ta_fitsnap") / "Volume_BCC"), key=lambda s: s.volume)
    vol = np.array([s.volume for s in structures])
    energy = np.array([s.energy for s in structures])
    mean_stress = np.array([np.trace(s.stress) / 3 for s in structures])
    dedv = np.gradient(energy, vol)[1:-1]  # central differences on the interior points
    np.testing.assert_array_equal(np.sign(dedv), np.sign(mean_stress[1:-1]))
    big = np.abs(dedv) > 0.1
    np.testing.assert_allclose(mean_stress[1:-1][big], dedv[big], rtol=0.1)


def _fitsnap_file(tmp_path, **style_changes) -> Path:
    dataset = {"Data": [{"Positions": [[0, 0, 0], [1.5, 1.5, 1.5]], "AtomTypes": ["Ta", "Ta"],
                         "Energy": -20.0, "Lattice": [[3, 0, 0], [0, 3, 0], [0, 0, 3]],
                         "NumAtoms": 2, "Forces": [[0.1, 0, 0], [-0.1, 0, 0]],
                         "Stress": [[1000.0, 0, 0], [0, 2000.0, 0], [0, 0, 3000.0]]}],
               "PositionsStyle": "angstrom", "AtomTypeStyle": "chemicalsymbol",
               "StressStyle": "bar", "LatticeStyle": "angstrom", "EnergyStyle": "electronvolt",
               "ForcesStyle": "electronvoltperangstrom"}
    for k, v in style_changes.items():
        if v is None:
            dataset.pop(k)
        else:
            dataset[k] = v
    p = tmp_path / "conf.json"
    p.write_text("# comment line\n" + json.dumps({"Dataset": dataset}))
    return p


def test_fitsnap_units_styles(tmp_path):
    (s,) = read(_fitsnap_file(tmp_path))
    np.testing.assert_allclose(np.diag(s.stress), -np.array([1e3, 2e3, 3e3]) * ase.units.bar)
    (k,) = read(_fitsnap_file(tmp_path, StressStyle="kbar"))
    np.testing.assert_allclose(k.stress, 1e3 * s.stress, rtol=1e-12)
    (b,) = read(_fitsnap_file(tmp_path, PositionsStyle="bohr", LatticeStyle="bohr"))
    np.testing.assert_allclose(b.positions, s.positions * ase.units.Bohr, rtol=1e-9)
    with pytest.raises(ReadError, match=r"conf\.json.*StressStyle.*'furlong'"):
        read(_fitsnap_file(tmp_path, StressStyle="furlong"))
    with pytest.raises(ReadError, match=r"conf\.json.*EnergyStyle.*missing"):
        read(_fitsnap_file(tmp_path, EnergyStyle=None))
    (m,) = read(_fitsnap_file(tmp_path, EnergyStyle=None), styles={"EnergyStyle": "eV"})
    assert m.energy == -20.0


def test_fitsnap_bad_records(tmp_path):
    p = _fitsnap_file(tmp_path)
    obj = json.loads(p.read_text().split("\n", 1)[1])
    obj["Dataset"]["Data"][0]["AtomTypes"] = ["Ta", "Qq"]
    p.write_text(json.dumps(obj))
    with pytest.raises(ReadError, match=r"conf\.json: frame 0: field 'AtomTypes'.*Qq"):
        read(p)
    obj["Dataset"]["Data"][0]["AtomTypes"] = ["Ta", "Ta"]
    obj["Dataset"]["Data"][0]["Forces"] = [[0.1, 0, 0]]
    p.write_text(json.dumps(obj))
    with pytest.raises(ReadError, match=r"conf\.json: frame 0: field 'forces'.*shape"):
        read(p)
    obj["Dataset"]["Data"][0]["Forces"] = [[0.1, 0, 0], [float("nan"), 0, 0]]
    p.write_text(json.dumps(obj))
    with pytest.raises(ReadError, match=r"conf\.json: frame 0: field 'forces'.*NaN"):
        read(p)
    p.write_text('{"Dataset": {"Data": [')
    with pytest.raises(ReadError, match=r"conf\.json.*not valid JSON"):
        read(p)


# --------------------------------------------------------------------------- miniff
def test_miniff_bise_reads_all_10_frames():
    p = need("bise_miniff") / "amorphous_bise_10frames.json"
    structures = read(p, require=("energy", "forces"))
    assert len(structures) == 10
    raw = json.loads(p.read_text())
    for k, (s, rec) in enumerate(zip(structures, raw)):
        assert s.name == f"amorphous_bise_10frames.json:{k}"
        assert len(s) == 65 and s.symbols.count("Bi") == 27 and s.symbols.count("Se") == 38
        assert s.pbc.all()
        cell = np.array(rec["vectors"]["data"])
        np.testing.assert_allclose(s.cell, cell)
        # fractional -> Cartesian: solving back gives the stored fractions
        frac = np.linalg.solve(cell.T, s.positions.T).T
        np.testing.assert_allclose(frac, rec["coordinates"]["data"], atol=1e-12)
        assert s.energy == rec["meta"]["total-energy"]["data"]
        np.testing.assert_array_equal(s.forces, rec["meta"]["forces"]["data"])
        np.testing.assert_array_equal(s.info["charges"], rec["meta"]["charges"]["data"])
    energies = [s.energy for s in structures]
    assert min(energies) == pytest.approx(-66079.97, abs=0.01)
    assert max(energies) == pytest.approx(-65891.44, abs=0.01)


def test_miniff_bise_force_sign_observation():
    """Pins the data property documented in forcefit.io.miniff (stored sign looks like dE/dr).

    Compressed pairs (shortest 10 % within 3.6 A) are mostly pulled together by the stored
    vectors; with negate_forces=True they are mostly pushed apart, as forces should.
    """
    from forcefit.neighbors import neighbor_list

    p = need("bise_miniff") / "amorphous_bise_10frames.json"

    def repulsive_fraction(s):
        e = neighbor_list(s, 3.6)
        half = e.i < e.j
        unit = e.vectors[half] / e.distances[half, None]  # (pairs, 3)
        apart = np.sum((s.forces[e.j[half]] - s.forces[e.i[half]]) * unit, axis=1)  # (pairs,)
        short = e.distances[half] < np.percentile(e.distances[half], 10)
        return np.mean(apart[short] > 0)

    stored = [repulsive_fraction(s) for s in read(p)]
    flipped = [repulsive_fraction(s) for s in fio.read_miniff_json(p, negate_forces=True)]
    assert max(stored) < 0.5 and min(flipped) > 0.5
    np.testing.assert_allclose(np.array(stored) + np.array(flipped), 1.0)


def test_miniff_units_and_errors(tmp_path):
    rec = {"vectors": {"data": [[4, 0, 0], [0, 4, 0], [0, 0, 4]], "units": "nm"},
           "coordinates": {"data": [[0, 0, 0], [0.5, 0.5, 0.5]]},
           "values": {"data": ["bi", "se"]},
           "meta": {"total-energy": {"data": -1.0, "units": "kJ/mol"},
                    "forces": {"data": [[1, 0, 0], [-1, 0, 0]], "units": "kJ/mol/nm"}}}
    p = tmp_path / "m.json"
    p.write_text(json.dumps([rec]))
    (s,) = read(p)
    np.testing.assert_allclose(s.positions[1], [20, 20, 20])
    assert s.energy == pytest.approx(-KJ_PER_MOL, rel=1e-12)
    assert s.forces[0, 0] == pytest.approx(KJ_PER_MOL / 10, rel=1e-12)
    rec["meta"]["total-energy"]["units"] = "parsec"
    p.write_text(json.dumps([rec, rec]))
    with pytest.raises(ReadError, match=r"m\.json: frame 0: field 'meta.total-energy'"):
        read(p)
    rec["meta"]["total-energy"]["units"] = "eV"
    bad = json.loads(json.dumps(rec))
    bad["values"]["data"] = ["bi", "xx"]
    p.write_text(json.dumps([rec, bad]))
    with pytest.raises(ReadError, match=r"m\.json: frame 1: field 'values'.*Xx"):
        read(p)
    p.write_text(json.dumps([{"something": 1}]))
    with pytest.raises(ReadError, match=r"m\.json: field 'file'.*not FitSNAP, miniff"):
        read(p)


# --------------------------------------------------------------------------- ASE formats
def test_cu_emt_all_400_frames_with_labels():
    p = need("cu_emt") / "cu_emt.extxyz"
    structures = read(p, require=("energy", "forces", "stress"), group_key="config_type")
    reference = ase.io.read(p, index=":")
    assert len(structures) == len(reference) == 400
    assert sum(len(s) for s in structures) == 27240
    for k in (0, 123, 399):
        s, a = structures[k], reference[k]
        assert s.name == f"cu_emt.extxyz:{k}"
        assert s.energy == a.get_potential_energy()
        np.testing.assert_array_equal(s.forces, a.get_forces())
        np.testing.assert_allclose(s.stress, a.get_stress(voigt=False), rtol=0, atol=0)
        assert s.group == a.info["config_type"]
    groups = {s.group for s in structures}
    assert groups == {"rattle", "strain", "ev_curve", "md"}


def test_index_selection_keeps_frame_numbers():
    p = need("cu_emt") / "cu_emt.extxyz"
    assert [s.name for s in read(p, index="5:10:2")] == [f"cu_emt.extxyz:{k}" for k in (5, 7, 9)]
    assert [s.name for s in read(p, index=-1)] == ["cu_emt.extxyz:399"]
    assert [s.name for s in read(p, index=3)] == ["cu_emt.extxyz:3"]


def _xyz(tmp_path, frames: list[Atoms], name="t.extxyz") -> Path:
    p = tmp_path / name
    ase.io.write(p, frames, format="extxyz")
    return p


def _atoms(rng, n=3, **info) -> Atoms:
    a = Atoms(["Cu"] * n, positions=rng.uniform(0, 4, (n, 3)), cell=np.eye(3) * 4, pbc=True)
    a.info.update(info)
    return a


def test_labels_from_keys_are_explicit_never_guessed(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(3):
        a = _atoms(rng, my_energy=float(k), dft_stress=rng.normal(size=6))
        a.arrays["my_forces"] = rng.normal(size=(3, 3))
        frames.append(a)
    p = _xyz(tmp_path, frames)
    plain = read(p)
    assert all(s.energy is None and s.forces is None and s.stress is None for s in plain)
    assert plain[1].info["my_energy"] == 1.0  # kept as metadata, not used as a label
    got = read(p, energy_key="my_energy", forces_key="my_forces", stress_key="dft_stress")
    for s, a in zip(got, frames):
        assert s.energy == a.info["my_energy"]
        np.testing.assert_allclose(s.forces, a.arrays["my_forces"])
        xx, yy, zz, yz, xz, xy = a.info["dft_stress"]
        np.testing.assert_allclose(s.stress, [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        assert "my_energy" not in s.info
    with pytest.raises(ReadError, match=r"t\.extxyz.*field 'energy'.*'my_enrgy'.*my_energy"):
        read(p, energy_key="my_enrgy")
    with pytest.raises(ReadError, match=r"t\.extxyz: frame 0: field 'forces': required"):
        read(p, energy_key="my_energy", require=("energy", "forces"))


def test_stress_as_matrix_and_units_conversion(tmp_path):
    rng = np.random.default_rng(1)
    m = rng.normal(size=(3, 3))
    m = m + m.T
    a = _atoms(rng, s33=m)
    a.calc = SinglePointCalculator(a, energy=2.0, forces=np.ones((3, 3)))
    p = _xyz(tmp_path, [a])
    (s,) = read(p, stress_key="s33")
    np.testing.assert_allclose(s.stress, m)
    (u,) = read(p, stress_key="s33", units={"length": "nm", "energy": "kcal/mol"})
    kcal = ase.units.kcal / ase.units.mol  # CODATA 2014 in ASE: agrees to ~1e-8
    assert u.energy == pytest.approx(2.0 * kcal, rel=1e-7)
    np.testing.assert_allclose(u.forces, np.ones((3, 3)) * kcal / 10, rtol=1e-7)
    np.testing.assert_allclose(u.positions, a.positions * 10)
    np.testing.assert_allclose(u.cell, np.asarray(a.cell) * 10)
    np.testing.assert_allclose(u.stress, m * kcal / 1000, rtol=1e-7)
    (g,) = read(p, stress_key="s33", units={"stress": "GPa"})
    np.testing.assert_allclose(g.stress, m * ase.units.GPa, rtol=1e-7)


def test_other_ase_formats_traj_json_db_poscar(tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    a = bulk("Cu", "fcc", 3.6) * (2, 1, 1)
    a.rattle(0.05, seed=1)
    a.calc = EMT()
    energy, forces, stress = a.get_potential_energy(), a.get_forces(), a.get_stress()
    ase.io.write(tmp_path / "a.traj", [a, a])
    ase.io.write(tmp_path / "db.json", [a, a], format="json")
    ase.io.write(tmp_path / "POSCAR", a, format="vasp")
    for name in ("a.traj", "db.json"):
        got = read(tmp_path / name, require=("energy", "forces", "stress"))
        assert [s.name for s in got] == [f"{name}:0", f"{name}:1"]
        assert got[1].energy == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(got[1].forces, forces, atol=1e-12)
        np.testing.assert_allclose(got[1].stress, voigt(stress), atol=1e-12)
    (p,) = read(tmp_path / "POSCAR")
    np.testing.assert_allclose(p.positions, a.positions, atol=1e-6)
    assert p.energy is None
    with pytest.raises(ReadError, match=r"POSCAR: frame 0: field 'energy': required"):
        read(tmp_path / "POSCAR", require=("energy",))


def voigt(v):
    from forcefit.structure import voigt_to_matrix

    return voigt_to_matrix(v)


def _symmetric(rng) -> np.ndarray:
    m = rng.normal(size=(3, 3))
    return m + m.T


def _full_structures(rng) -> list[Structure]:
    out = []
    for k, pbc in enumerate(([True] * 3, [True, False, True], [False] * 3)):
        n = 4 + k
        cell = np.eye(3) * 6 + rng.normal(scale=0.3, size=(3, 3)) if any(pbc) else np.zeros((3, 3))
        out.append(Structure(
            numbers=rng.integers(1, 80, n), positions=rng.uniform(0, 5, (n, 3)), cell=cell,
            pbc=pbc, energy=rng.normal() * 100, forces=rng.normal(size=(n, 3)),
            stress=_symmetric(rng) * 0.01,
            energies=rng.normal(size=n), group=f"group {k}", weight=0.25 * (k + 1),
            name=f"orig_{k}.json:{k}", info={"config_type": "x y", "T_K": 300.0 + k}))
    out[2].stress = None  # an open molecule has no stress
    return out


def test_write_extxyz_round_trips_every_label(tmp_path):
    rng = np.random.default_rng(2)
    structures = _full_structures(rng)
    p = tmp_path / "out.extxyz"
    write_extxyz(p, structures)
    back = read(p)
    assert len(back) == len(structures)
    for s, b in zip(structures, back):
        np.testing.assert_array_equal(b.numbers, s.numbers)
        np.testing.assert_allclose(b.positions, s.positions, atol=1e-8)
        np.testing.assert_allclose(b.cell, s.cell, atol=1e-12)
        np.testing.assert_array_equal(b.pbc, s.pbc)
        assert b.energy == s.energy  # header values are written in full precision
        np.testing.assert_allclose(b.forces, s.forces, atol=1e-8)
        np.testing.assert_allclose(b.energies, s.energies, atol=1e-8)
        if s.stress is None:
            assert b.stress is None
        else:
            np.testing.assert_allclose(b.stress, s.stress, rtol=1e-15, atol=1e-18)
        assert (b.group, b.weight, b.name) == (s.group, s.weight, s.name)
        assert b.info["config_type"] == "x y" and b.info["T_K"] == s.info["T_K"]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["out.extxyz"]  # no temp left


def test_write_extxyz_round_trips_fitsnap_data(tmp_path):
    root = need("ta_fitsnap")
    structures = read([root / "Surface", root / "Volume_BCC" / "BCC_2.2.json"])
    p = tmp_path / "ta.extxyz"
    write_extxyz(p, structures)
    back = read(p)
    for s, b in zip(structures, back):
        assert (b.name, b.group, b.energy) == (s.name, s.group, s.energy)
        np.testing.assert_allclose(b.stress, s.stress, rtol=1e-15)


def test_write_extxyz_is_atomic(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    structures = _full_structures(rng)
    p = tmp_path / "keep.extxyz"
    write_extxyz(p, structures[:1])
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ase.io, "write", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_extxyz(p, structures)
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["keep.extxyz"]


def test_write_extxyz_skips_unwritable_info_with_warning(tmp_path):
    s = Structure(numbers=[1, 1], positions=[[0, 0, 0], [0.7, 0, 0]], name="h2",
                  info={"nested": {"a": 1}, "ok": 2})
    p = tmp_path / "h2.xyz"
    with pytest.warns(UserWarning, match="h2.*'nested'"):
        write_extxyz(p, s)
    (b,) = read(p)
    assert b.info["ok"] == 2 and "nested" not in b.info and b.name == "h2"


# --------------------------------------------------------------------------- bad input
def _write_text(tmp_path, name, text) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


_FRAME = ('2\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:{nf} '
          'energy=1.0 pbc="T T T"\n{s0} 0 0 0 {f0}\n{s1} 1 1 1 {f1}\n')


def _frame(s0="Cu", s1="Cu", f0="1 2 3", f1="4 5 6", nf=3):
    return _FRAME.format(s0=s0, s1=s1, f0=f0, f1=f1, nf=nf)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ReadError, match=r"nothing\.extxyz: field 'file': no such file"):
        read(tmp_path / "nothing.extxyz")
    with pytest.raises(ReadError, match=r"\*\.xyz: field 'file': no file matches"):
        read(str(tmp_path / "*.xyz"))
    garbage = _write_text(tmp_path, "garbage.extxyz", "this is\nnot a structure file\n")
    with pytest.raises(ReadError, match=r"garbage\.extxyz: frame 0: cannot be read"):
        read(garbage)
    with pytest.raises(ReadError, match=r"empty list"):
        read([])


def test_nan_wrong_shape_unknown_element_name_file_frame_field(tmp_path):
    nan = _write_text(tmp_path, "nan.extxyz", _frame() + _frame(f1="nan 5 6"))
    with pytest.raises(ReadError, match=r"nan\.extxyz: frame 1: field 'forces'.*NaN"):
        read(nan)
    shape = _write_text(tmp_path, "shape.extxyz", _frame() + _frame(f0="1 2", f1="4 5", nf=2))
    with pytest.raises(ReadError, match=r"shape\.extxyz: frame 1: field 'forces'.*shape"):
        read(shape)
    elem = _write_text(tmp_path, "elem.extxyz", _frame() + _frame() + _frame(s1="Xx"))
    with pytest.raises(ReadError, match=r"elem\.extxyz: frame 2: field 'species'.*Xx"):
        read(elem)
    assert isinstance(ReadError("f", "x"), ValueError)


def test_required_label_missing_names_frame(tmp_path):
    rng = np.random.default_rng(4)
    frames = [_atoms(rng), _atoms(rng), _atoms(rng)]
    for a in frames[:2]:
        a.calc = SinglePointCalculator(a, energy=1.0, forces=np.zeros((3, 3)))
    frames[2].calc = SinglePointCalculator(frames[2], energy=1.0)
    p = _xyz(tmp_path, frames, "req.extxyz")
    assert read(p, require=("energy",))[2].forces is None
    with pytest.raises(ReadError, match=r"req\.extxyz: frame 2: field 'forces': required"):
        read(p, require=("energy", "forces"))
    with pytest.raises(ValueError, match="unknown label"):
        read(p, require=("enrgy",))


def test_glob_and_list_inputs(tmp_path):
    rng = np.random.default_rng(5)
    for name in ("b.extxyz", "a.extxyz"):
        _xyz(tmp_path, [_atoms(rng), _atoms(rng)], name)
    got = read(str(tmp_path / "*.extxyz"), group="train")
    assert [s.name for s in got] == ["a.extxyz:0", "a.extxyz:1", "b.extxyz:0", "b.extxyz:1"]
    assert {s.group for s in got} == {"train"}
    both = read([tmp_path / "b.extxyz", str(tmp_path / "a.*")])
    assert [s.name for s in both][:2] == ["b.extxyz:0", "b.extxyz:1"]


# --------------------------------------------------------------------------- npy
def _ethane_kwargs(d: Path) -> dict:
    return {"forces": d / "forces_ethane.npy", "energies": d / "energies_ethane.npy",
                "numbers": [6, 6, 1, 1, 1, 1, 1, 1], "cell": np.eye(3), "pbc": True,
                "length_unit": "nm", "energy_unit": "kJ/mol"}


def test_ethane_npy_native_and_converted():
    d = need("ethane_cg")
    pos = np.load(d / "positions_ethane.npy")
    frc = np.load(d / "forces_ethane.npy")
    eng = np.load(d / "energies_ethane.npy")
    native = read(d / "positions_ethane.npy", units="native", **_ethane_kwargs(d))
    assert len(native) == 9000
    s = native[4321]
    assert s.info["length_unit"] == "nm" and s.info["energy_unit"] == "kJ/mol"
    assert s.name == "positions_ethane.npy:4321"
    np.testing.assert_array_equal(s.positions, pos[4321].astype(np.float64))
    np.testing.assert_array_equal(s.forces, frc[4321].astype(np.float64))
    assert s.energy == float(eng[4321])
    np.testing.assert_array_equal(s.cell, np.eye(3))
    conv = fio.read_npy_trajectory(d / "positions_ethane.npy", units="forcefit", index="4321",
                                   **_ethane_kwargs(d))
    (c,) = conv
    assert c.info["length_unit"] == "angstrom" and c.info["energy_unit"] == "eV"
    np.testing.assert_allclose(c.positions, s.positions * 10, rtol=1e-15)
    np.testing.assert_allclose(c.cell, np.eye(3) * 10)
    np.testing.assert_allclose(c.forces, s.forces * KJ_PER_MOL / 10, rtol=1e-15)
    assert c.energy == pytest.approx(s.energy * KJ_PER_MOL, rel=1e-15)
    assert KJ_PER_MOL == pytest.approx(ase.units.kJ / ase.units.mol, rel=1e-8)


def test_npy_arrays_and_errors(tmp_path):
    rng = np.random.default_rng(6)
    pos = rng.uniform(0, 3, (5, 4, 3))
    frc = rng.normal(size=(5, 4, 3))
    got = fio.read_npy_trajectory(pos, frc, numbers=["Ar"] * 4, length_unit="A",
                                  energy_unit="eV", units="forcefit", require=("forces",))
    assert len(got) == 5 and got[2].name == "trajectory:2" and got[0].energy is None
    np.testing.assert_array_equal(got[3].forces, frc[3])
    bad = frc.copy()
    bad[3, 1, 2] = np.nan
    np.save(tmp_path / "pos.npy", pos)
    np.save(tmp_path / "frc.npy", bad)
    with pytest.raises(ReadError, match=r"pos\.npy: frame 3: field 'forces'.*NaN"):
        read(tmp_path / "pos.npy", forces=tmp_path / "frc.npy", numbers=[18] * 4,
             length_unit="A", energy_unit="eV", units="native")
    np.save(tmp_path / "frc.npy", frc[:, :3])
    with pytest.raises(ReadError, match=r"frc\.npy: field 'forces'.*shape"):
        fio.read_npy_trajectory(tmp_path / "pos.npy", tmp_path / "frc.npy", numbers=[18] * 4,
                                length_unit="A", energy_unit="eV", units="native")
    with pytest.raises(ReadError, match=r"pos\.npy: field 'units'.*never assumed"):
        read(tmp_path / "pos.npy", numbers=[18] * 4, length_unit="A", energy_unit="eV")
    with pytest.raises(ValueError, match="units must be"):
        fio.read_npy_trajectory(pos, numbers=[18] * 4, length_unit="A", energy_unit="eV",
                                units="si")
    with pytest.raises(ValueError, match="unknown length unit 'furlong'"):
        fio.read_npy_trajectory(pos, numbers=[18] * 4, length_unit="furlong",
                                energy_unit="eV", units="forcefit")
    with pytest.raises(ReadError, match=r"field 'numbers'.*unknown element 'Qq'"):
        fio.read_npy_trajectory(pos, numbers=["Ar", "Qq", "Ar", "Ar"], length_unit="A",
                                energy_unit="eV", units="forcefit")
    with pytest.raises(ReadError, match=r"field 'forces'.*not numeric"):
        fio.read_npy_trajectory(pos, np.full((5, 4, 3), "a"), numbers=[18] * 4, length_unit="A",
                                energy_unit="eV", units="forcefit")
    with pytest.raises(ReadError, match=r"frame 0: field 'numbers'.*Z=0"):
        fio.read_npy_trajectory(pos, numbers=[18, 0, 18, 18], length_unit="A",
                                energy_unit="eV", units="forcefit")


def test_read_error_attributes_and_pickling():
    import pickle

    err = ReadError("a/b.xyz", "contains NaN", frame=3, field="forces")
    assert str(err) == "a/b.xyz: frame 3: field 'forces': contains NaN"
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.frame, back.field) == (str(err), "a/b.xyz", 3, "forces")


def test_structure_error_is_still_raised_for_direct_construction():
    with pytest.raises(StructureError):
        Structure(numbers=[1], positions=[[0, 0, np.nan]])
