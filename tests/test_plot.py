"""Plots from the documented output files: parity, learning curves, curves, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from forcefit import plot


def _write_outputs(folder, rng, stress=False):
    n_conf = 12
    natoms = rng.integers(2, 6, n_conf)
    e_true = rng.normal(size=n_conf) * natoms
    e_pred = e_true + rng.normal(scale=0.1, size=n_conf)
    test = np.arange(n_conf) % 4 == 0
    header = "Filename Group Natoms Energy_Truth Energy_Pred Testing_Bool"
    if stress:
        header += " " + " ".join(f"S{c}_Truth S{c}_Pred" for c in plot._STRESS)
    lines = [header]
    for k in range(n_conf):
        row = (f"f{k}.json G{k % 2} {natoms[k]} {float(e_true[k])!r} {float(e_pred[k])!r} "
               f"{bool(test[k])}")
        if stress:
            row += " " + " ".join([f"{0.01 * k} {0.01 * k + 1e-3}"] * len(plot._STRESS))
        lines.append(row)
    (folder / "perconfig.dat").write_text("\n".join(lines) + "\n")
    rows = [("Filename Group AtomID Type Fx_Truth Fy_Truth Fz_Truth Fx_Pred Fy_Pred Fz_Pred "
             "Testing_Bool")]
    f_true, f_pred, f_test = [], [], []
    for k in range(n_conf):
        for a in range(natoms[k]):
            ft = rng.normal(size=3)
            fp = ft + rng.normal(scale=0.05, size=3)
            f_true.append(ft)
            f_pred.append(fp)
            f_test.append(test[k])
            rows.append(f"f{k}.json G{k % 2} {a + 1} Cu " + " ".join(repr(float(x)) for x in ft)
                        + " " + " ".join(repr(float(x)) for x in fp) + f" {int(test[k])}")
    (folder / "peratom.dat").write_text("\n".join(rows) + "\n")
    return (e_true / natoms, e_pred / natoms, test, np.array(f_true), np.array(f_pred),
            np.array(f_test))


def _is_png(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def test_mae_rmse_against_direct_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    mae, rmse = plot.mae_rmse(a, b)
    assert mae == pytest.approx(np.abs(a - b).mean())
    assert rmse == pytest.approx(np.sqrt(((a - b) ** 2).mean()))
    assert np.isnan(plot.mae_rmse([], [])[0])


def test_parity_files_and_legend_numbers(tmp_path):
    rng = np.random.default_rng(1)
    e_t, e_p, test, f_t, f_p, f_test = _write_outputs(tmp_path, rng, stress=True)
    made = plot.plot_parity_files(tmp_path)
    assert set(made) == {"energy", "forces", "stress"}
    for p in made.values():
        _is_png(p)
    # the legend numbers are the train/test errors of the file contents
    plt = plot._pyplot()
    fig, ax = plt.subplots()
    stats = plot.parity_plot(ax, e_t, e_p, test, quantity="energy", unit="eV/atom")
    assert stats["test"][0] == pytest.approx(np.abs(e_t[test] - e_p[test]).mean())
    assert stats["train"][1] == pytest.approx(np.sqrt(((e_t - e_p)[~test] ** 2).mean()))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"MAE {stats['train'][0]:.3g}" in lab and lab.startswith("train") for lab in labels)
    assert any(f"RMSE {stats['test'][1]:.3g}" in lab and lab.startswith("test") for lab in labels)
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in ax.collections}
    assert len(colours) == 2  # train and test differ
    fig2, ax2 = plt.subplots()
    f_stats = plot.parity_plot(ax2, f_t, f_p, np.repeat(f_test[:, None], 3, 1),
                               quantity="force", unit="eV/A")
    ok = ~f_test
    assert f_stats["train"][1] == pytest.approx(np.sqrt(((f_t - f_p)[ok] ** 2).mean()))
    plt.close(fig)
    plt.close(fig2)


def test_learning_curve(tmp_path):
    f = tmp_path / "loss_vs_epochs.dat"
    f.write_text("epoch train val\n" + "".join(f"{k} {1.0 / (k + 1)} {1.2 / (k + 1)}\n"
                                              for k in range(20)))
    d = plot.read_loss_file(f)
    assert d["epoch"].tolist() == list(range(20))
    assert d["validation"][3] == pytest.approx(0.3)
    _is_png(plot.plot_learning_curve(f, tmp_path / "lc.png"))
    made = plot.plot_fit_outputs(tmp_path)
    assert "learning_curve" in made


def test_bad_files_name_file_and_line(tmp_path):
    f = tmp_path / "perconfig.dat"
    f.write_text("Filename Group Natoms Energy_Truth Energy_Pred Testing_Bool\na G 2 1.0 1.1\n")
    with pytest.raises(plot.PlotError, match=r"perconfig.dat: line 2 has 5 columns"):
        plot.read_table(f)
    f.write_text("Filename Group Natoms Energy_Truth Testing_Bool\na G 2 1.0 1\n")
    with pytest.raises(plot.PlotError, match="missing column 'Energy_Pred'"):
        plot.plot_parity_files(tmp_path)
    g = tmp_path / "loss.dat"
    g.write_text("# nothing\n")
    with pytest.raises(plot.PlotError, match="no epochs"):
        plot.read_loss_file(g)


def test_histograms_and_atomic_write(tmp_path):
    rng = np.random.default_rng(2)
    out = plot.plot_descriptor_histograms(rng.normal(size=(100, 7)), [f"G2_{k}" for k in
                                                                      range(7)],
                                          tmp_path / "h.png")
    _is_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temp file left behind
    with pytest.raises(plot.PlotError, match="atoms, features"):
        plot.plot_descriptor_histograms(np.zeros(5), [], tmp_path / "x.png")


def test_pair_curves_follow_the_model(tmp_path):
    import torch

    class Harmonic(torch.nn.Module):
        """E = sum over i<j of (r - 1.5)^2 (each directed edge gives half to its centre)."""

        cutoff = 3.0

        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def forward(self, graph, vectors):
            r = vectors.norm(dim=1)  # (edges,)
            e = 0.5 * self.k * (r - 1.5) ** 2  # (edges,)
            return torch.zeros(len(graph.numbers), dtype=r.dtype).index_add(0, graph.i, e)

    out = plot.plot_pair_curves(Harmonic(), [29], tmp_path / "pair.png", r_min=0.5, n=50)
    _is_png(out)
    # the curve plotted is the dimer energy: check the numbers through _dimers + evaluate
    from forcefit.neighbors import build_graph
    from forcefit.potentials.base import evaluate

    r = np.linspace(0.5, 3.0, 50)
    g = build_graph(plot._dimers([(29, 29)], r, 3.0), 3.0)
    e = evaluate(Harmonic(), g, forces=False, stress=False)["energy"].detach().numpy()
    inside = r < 3.0
    np.testing.assert_allclose(e[inside], (r[inside] - 1.5) ** 2, rtol=1e-12)
