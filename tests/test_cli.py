"""The forcefit command line, end to end on a small Cu EMT set: fit, eval, describe, relax,
md, demo, convert, and the errors a new user meets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forcefit import cli
from forcefit.demo import make_cu_dataset
from forcefit.io import write_extxyz

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[data]
paths = ["cu.extxyz"]
group_key = "config_type"

[descriptors]
cutoff = 4.0
n_radial = 5
n_angular = 2

[model]
layer_sizes = "num_desc 8 1"
multi_element_option = 1

[training]
learning_rate = 5e-3
num_epochs = 3
batch_size = 4
training_fraction = 0.75
manual_seed = 3

[output]
folder = "run"
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One small fit shared by the tests (3 epochs on 12 Cu structures of 32 atoms)."""
    folder = tmp_path_factory.mktemp("fit")
    write_extxyz(folder / "cu.extxyz", make_cu_dataset(12, seed=1, sizes=(2,)))
    (folder / "fit.toml").write_text(CONFIG)
    rc = cli.main(["fit", str(folder / "fit.toml"), "--quiet"])
    assert rc == 0
    return folder


def test_help_of_every_command_shows_an_example(capsys):
    for command in cli.COMMANDS:
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"forcefit {command} " in out, command
    assert cli.main([]) == 2  # no command: the overview and status 2
    assert "forcefit demo" in capsys.readouterr().out


def test_fit_writes_every_output(fitted):
    run = fitted / "run"
    for name in ("metrics.dat", "loss_vs_epochs.dat", "peratom.dat", "perconfig.dat",
                 "predictions.extxyz", "model.pt", "forcefit.log", "config_used.toml",
                 "parity_energy.png", "parity_forces.png", "parity_stress.png",
                 "learning_curve.png", "descriptor_histograms.png", "dimer_curves.png"):
        assert (run / name).is_file(), name
    log = (run / "forcefit.log").read_text()
    assert "epoch 3/3" in log and "train" in log  # the per-epoch lines reach the log file
    assert "metrics (energy eV/atom" in log
    # the metrics table agrees with the comparison file it came with
    from forcefit.plot import read_table

    pc = read_table(run / "perconfig.dat")
    test = pc["Testing_Bool"].astype(bool)
    err = (pc["Energy_Pred"] - pc["Energy_Truth"]) / pc["Natoms"]
    rows = [ln.split() for ln in (run / "metrics.dat").read_text().splitlines()[1:]]
    row = next(r for r in rows if r[:3] == ["*ALL", "Test", "Energy"])
    assert int(row[3]) == test.sum() == 3
    assert float(row[4]) == pytest.approx(np.abs(err[test]).mean(), rel=1e-6)
    assert (run / "loss_vs_epochs.dat").read_text().count("\n") == 4  # header + 3 epochs


def test_quiet_prints_nothing_and_progress_lines(tmp_path, capsys, fitted, monkeypatch):
    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    (tmp_path / "fit.toml").write_text(CONFIG.replace("num_epochs = 3", "num_epochs = 1"))
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet", "--no-plots"]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--no-plots", "-o",
                     str(tmp_path / "loud")]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "*ALL" in out
    assert not list((tmp_path / "loud").glob("*.png"))
    monkeypatch.setenv("FORCEFIT_PROGRESS", "1")  # progress bars as on a terminal
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--no-plots", "-o",
                     str(tmp_path / "bars")]) == 0
    err = capsys.readouterr().err
    assert "training" in err and "epoch" in err  # the tqdm bar over epochs


def test_test_paths_are_evaluated_after_the_fit(tmp_path, fitted):
    from forcefit.plot import read_table

    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    write_extxyz(tmp_path / "extra.extxyz", make_cu_dataset(3, seed=9, sizes=(2,)))
    text = CONFIG.replace('group_key = "config_type"',
                          'group_key = "config_type"\ntest_paths = ["extra.extxyz"]')
    (tmp_path / "fit.toml").write_text(text.replace("num_epochs = 3", "num_epochs = 1"))
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet", "--no-plots"]) == 0
    pc = read_table(tmp_path / "run" / "test_set" / "perconfig.dat")
    assert len(pc["Natoms"]) == 3 and pc["Testing_Bool"].all()
    assert "test-set metrics" in (tmp_path / "run" / "forcefit.log").read_text()


def test_reference_potential_fitted_under_the_network(tmp_path, fitted):
    """[model] reference: the ZBL prior is part of the saved model and its curve is plotted."""
    from forcefit.potentials import ZBL
    from forcefit.saved import load

    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    text = CONFIG.replace('multi_element_option = 1', 'multi_element_option = 1\n'
                          'reference = {type = "ZBL", inner = 1.0, outer = 2.0}')
    (tmp_path / "fit.toml").write_text(text.replace("num_epochs = 3", "num_epochs = 1"))
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet"]) == 0
    assert (tmp_path / "run" / "reference_curves.png").is_file()
    model = load(tmp_path / "run" / "model.pt")
    assert isinstance(model.prior, ZBL) and (model.prior.inner, model.prior.outer) == (1.0, 2.0)


def test_save_state_input_with_zero_epochs_only_evaluates(tmp_path, fitted):
    """FitSNAP's "calculate errors on a test set": the saved model, no training."""
    from forcefit.plot import read_table

    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    model = fitted / "run" / "model.pt"
    text = CONFIG.replace("num_epochs = 3", f"num_epochs = 0\nsave_state_input = '{model}'")
    (tmp_path / "fit.toml").write_text(text)
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet", "--no-plots"]) == 0
    before = read_table(fitted / "run" / "perconfig.dat")
    after = read_table(tmp_path / "run" / "perconfig.dat")
    np.testing.assert_allclose(after["Energy_Pred"], before["Energy_Pred"], rtol=1e-10)
    assert not (tmp_path / "run" / "loss_vs_epochs.dat").exists()  # nothing trained


def test_resume_continues_from_the_checkpoint(tmp_path, fitted, capsys):
    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    (tmp_path / "fit.toml").write_text(CONFIG)
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--resume", "--quiet"]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet", "--no-plots",
                     "--epochs", "2"]) == 0
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--resume", "--no-plots",
                     "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "epochs 3..4" in out and "epoch 4/4" in out and "epoch 1/4" not in out


@pytest.mark.parametrize("edit,expected", [
    (("learning_rate", "learning_rat"), "unknown key 'learning_rat'; did you mean 'learning_rate'"),
    (("num_epochs = 3", "num_epochs = 'three'"), "num_epochs: expected an integer, got string"),
    (('paths = ["cu.extxyz"]', 'paths = ["cu.xyz"]'),
     "'cu.xyz' does not exist .*did you mean 'cu.extxyz'"),
    (("n_angular = 2", "n_angular = 2\nspecies = [\"Ag\"]"),
     r"the data contain Cu .* but \[descriptors\] species = \['Ag'\]; add Cu"),
    (("[output]", "[groups.rattel]\ntraining_size = 1.0\n[output]"),
     r"\[groups.rattel\]: no structure .*did you mean 'rattle'"),
])
def test_user_errors_are_one_clear_line(tmp_path, capsys, fitted, edit, expected):
    (tmp_path / "cu.extxyz").write_text((fitted / "cu.extxyz").read_text())
    (tmp_path / "fit.toml").write_text(CONFIG.replace(*edit))
    assert cli.main(["fit", str(tmp_path / "fit.toml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forcefit fit: error:") and "Traceback" not in err
    import re

    assert re.search(expected, err), err


def test_eval_matches_ase_calculator(fitted, tmp_path, capsys):
    from ase.io import read

    from forcefit.plot import read_table
    from forcefit.saved import load

    out = tmp_path / "eval"
    rc = cli.main(["eval", str(fitted / "run" / "model.pt"), str(fitted / "cu.extxyz"),
                   "-o", str(out), "--group-key", "config_type"])
    assert rc == 0
    assert "*ALL" in capsys.readouterr().out
    pc = read_table(out / "perconfig.dat")
    assert pc["Testing_Bool"].all() and len(pc["Natoms"]) == 12
    # an independent path: the saved model through its ASE calculator
    calc = load(fitted / "run" / "model.pt").calculator()
    frames = read(fitted / "cu.extxyz", index=":")
    e = []
    for atoms in frames[:3]:
        atoms.calc = calc
        e.append(atoms.get_potential_energy())
    np.testing.assert_allclose(pc["Energy_Pred"][:3], e, rtol=1e-8)
    assert (out / "parity_forces.png").is_file() and (out / "forcefit.log").is_file()
    assert sorted(set(read_table(out / "peratom.dat")["Group"])) == ["rattle", "scale", "strain"]
    # a model file that is not there, a species the model does not know
    nowhere = tmp_path / "not_made"
    assert cli.main(["eval", str(tmp_path / "none.pt"), str(fitted / "cu.extxyz"), "-o",
                     str(nowhere)]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert not nowhere.exists()  # a failed command leaves no output folder behind
    from forcefit.structure import Structure

    write_extxyz(tmp_path / "ag.extxyz", [Structure(numbers=[47, 47], positions=[[0, 0, 0],
                                                                                [2.5, 0, 0]],
                                                    energy=0.0, forces=np.zeros((2, 3)))])
    assert cli.main(["eval", str(fitted / "run" / "model.pt"), str(tmp_path / "ag.extxyz"),
                     "-o", str(out)]) == 2
    assert "contains Ag, which the model" in capsys.readouterr().err


def test_describe_values_and_statistics(fitted, tmp_path):
    from forcefit.config import build_descriptor_set, load_config
    from forcefit.io import read
    from forcefit.neighbors import build_graph

    out = tmp_path / "desc"
    assert cli.main(["describe", str(fitted / "fit.toml"), "-o", str(out), "--quiet"]) == 0
    with np.load(out / "descriptors.npz") as z:
        values, owner, names = z["values"], z["structure"], list(z["feature_names"])
    cfg = load_config(fitted / "fit.toml")
    dset = build_descriptor_set(cfg.descriptors, [29])
    assert names == dset.feature_names and values.shape == (12 * 32, dset.n_features)
    s = read(fitted / "cu.extxyz", index="4")
    g = build_graph(s, dset.cutoff)
    direct = dset.values(g, g.edge_vectors()).detach().numpy()
    np.testing.assert_allclose(values[owner == 4], direct, rtol=1e-10, atol=1e-12)
    stats = np.loadtxt(out / "descriptor_stats.dat", usecols=(2, 3, 4, 5))
    np.testing.assert_allclose(stats[:, 0], values.mean(0), rtol=1e-7)
    np.testing.assert_allclose(stats[:, 3], values.max(0), rtol=1e-7)
    assert (out / "descriptor_radial.png").is_file()
    assert (out / "descriptor_histograms.png").is_file()


def test_relax_lowers_energy_to_fmax(fitted, tmp_path):
    from ase.build import bulk
    from ase.io import read, write

    from forcefit.saved import load

    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=2)
    write(tmp_path / "start.extxyz", atoms)
    rc = cli.main(["relax", str(fitted / "run" / "model.pt"), str(tmp_path / "start.extxyz"),
                   "--fmax", "0.02", "--steps", "300", "--quiet"])
    assert rc == 0
    relaxed = read(tmp_path / "start_relaxed.extxyz")
    calc = load(fitted / "run" / "model.pt").calculator()
    relaxed.calc = calc
    atoms.calc = calc
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 0.02
    assert relaxed.get_potential_energy() < atoms.get_potential_energy()
    assert len(read(tmp_path / "start_relax.traj", index=":")) >= 2
    assert cli.main(["relax", str(fitted / "run" / "model.pt"), str(tmp_path / "no.xyz")]) == 2
    assert cli.main(["relax", str(fitted / "run" / "model.pt"),
                     str(tmp_path / "typo" / "x.xyz")]) == 2
    assert not (tmp_path / "typo").exists()


def test_md_writes_trajectory_and_log(fitted, tmp_path):
    from ase.build import bulk
    from ase.io import read, write

    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2))
    rc = cli.main(["md", str(fitted / "run" / "model.pt"), str(tmp_path / "cu.extxyz"),
                   "--steps", "40", "--interval", "10", "--temperature", "200",
                   "--timestep", "1", "--quiet"])
    assert rc == 0
    rows = np.loadtxt(tmp_path / "cu_md.log")  # step time Epot Ekin Etot T
    assert rows.shape == (5, 6) and rows[-1, 0] == 40 and rows[-1, 1] == pytest.approx(40.0)
    np.testing.assert_allclose(rows[:, 4], rows[:, 2] + rows[:, 3], atol=2e-6)
    assert rows[0, 5] == pytest.approx(200, rel=0.5)  # Maxwell-Boltzmann start
    assert abs(rows[-1, 4] - rows[0, 4]) / 32 < 5e-3  # NVE: total energy nearly kept
    assert len(read(tmp_path / "cu_md.traj", index=":")) == 5


def test_convert_round_trip(tmp_path, capsys):
    from forcefit.config import load_config
    from forcefit.fitsnap_input import translate_fitsnap_input

    src = ROOT / "examples" / "ta_fitsnap" / "Ta-example.in"
    out = tmp_path / "ta.toml"
    assert cli.main(["convert", str(src), "-o", str(out)]) == 0
    assert "[BISPECTRUM]" in capsys.readouterr().out  # the warning is shown
    a = load_config(out, check_paths=False)
    b, _ = translate_fitsnap_input(src, check_paths=False)
    assert a.to_dict()["training"] == b.to_dict()["training"]
    assert a.groups == b.groups and a.model == b.model


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "-o", str(out), "--n-configs", "9", "--epochs", "2", "--quiet"])
    assert rc == 0
    line = capsys.readouterr().out
    assert line.startswith("demo: test force RMSE")
    for name in ("cu_emt_demo.extxyz", "demo.toml", "metrics.dat", "model.pt",
                 "parity_forces.png", "forcefit.log"):
        assert (out / name).is_file(), name
    from forcefit.saved import read_metadata

    meta = read_metadata(out / "model.pt")
    assert json.dumps(meta["species"]) == "[29]"
    # the config written is a valid forcefit config pointing at the data next to it
    from forcefit.config import load_config

    cfg = load_config(out / "demo.toml")
    assert cfg.data.paths == [str(out / "cu_emt_demo.extxyz")]
