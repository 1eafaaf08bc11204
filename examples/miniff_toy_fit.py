"""miniff's "Toy function fitting" tutorial with forcefit's dataset and trainer.

Units: none (a dimensionless toy function of a dimensionless r).

The seed: targets f(r) = (r^2 - r + 1) e^-r at 100 points r in [0.1, 10]; descriptors
g_i(r) = r^i e^-r for i = 0, 1, 2, so that f = g_2 - g_1 + g_0 exactly; one linear layer without
bias, f = W . g, fitted by full-batch LBFGS (miniff's default optimiser). miniff asserts a
final loss below 1e-8 and weights [1, -1, 1] to 1e-3.

forcefit maps miniff's containers onto its own: ``PerCellDataset(energy=f)`` and
``PerPointDataset(features=g)`` become one :class:`forcefit.data.FeatureDataset` of 100
one-"atom" structures (``FeatureDataset.from_tensors(g, [1] * 100, energy=f)``), and
``ml_util.simple_energy_closure`` + LBFGS becomes :class:`forcefit.train.Trainer` with
``optimizer="lbfgs"`` (strong Wolfe line search). The least-squares answer
(``numpy.linalg.lstsq``) is printed alongside, as the tutorial does.

Run: ``python examples/miniff_toy_fit.py [--plot toy.png]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def toy_data(n: int = 100):
    """r (n,), targets f (n,) and descriptors g (n, 3), float64."""
    r = torch.linspace(0.1, 10.0, n, dtype=torch.float64)  # (points,)
    f = (r**2 - r + 1) * torch.exp(-r)  # (points,)
    g = torch.stack([r**i * torch.exp(-r) for i in range(3)], dim=1)  # (points, 3)
    return r, f, g


def fit(seed: int = 0) -> dict:
    """Fit the bias-free linear map by full-batch LBFGS; return loss, weights, lstsq answer."""
    from forcefit.data import FeatureDataset
    from forcefit.train import TrainConfig, Trainer

    r, f, g = toy_data()
    dataset = FeatureDataset.from_tensors(g, [1] * len(r), energy=f)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(3, 1, bias=False).double()

    def loss_fn(model, batch):  # mean squared error of the "energies" (one atom each)
        return ((model(batch.values).squeeze(-1) - batch.energy) ** 2).mean()

    everything = dataset.collate(np.arange(len(r)))
    with torch.no_grad():
        initial = float(loss_fn(layer, everything))
    config = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=5, lbfgs_max_iter=200,
                         lbfgs_tolerance_grad=1e-14, lbfgs_tolerance_change=1e-14, seed=seed)
    Trainer(layer, loss_fn, list(range(len(r))), config=config, collate=dataset.collate,
            log=None, quiet=True).fit()
    with torch.no_grad():
        final = float(loss_fn(layer, everything))
    weights = layer.weight.detach().reshape(-1).numpy()
    lstsq = np.linalg.lstsq(g.numpy(), f.numpy(), rcond=None)[0]
    return {"initial_loss": initial, "final_loss": final, "weights": weights.tolist(),
            "lstsq_weights": lstsq.tolist(), "layer": layer}


def plot(result: dict, path: str) -> None:
    """Target curve and the fitted map at the sampling points (the tutorial's last plot)."""
    from forcefit.plot import _pyplot, save_figure

    r, f, g = toy_data()
    with torch.no_grad():
        pred = result["layer"](g).squeeze(-1)  # (points,)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(r, f, color="k", label="f(r) = (r^2 - r + 1) exp(-r)")
    ax.scatter(r, pred, s=10, color="tab:orange", label="fitted W . g(r)")
    ax.set_xlabel("r")
    ax.set_ylabel("f")
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="write the fit plot to this PNG")
    args = parser.parse_args(argv)
    result = fit(args.seed)
    print(f"initial loss {result['initial_loss']:.3e}, final loss {result['final_loss']:.3e}")
    print(f"weights (LBFGS)  {np.round(result['weights'], 6).tolist()}")
    print(f"weights (lstsq)  {np.round(result['lstsq_weights'], 6).tolist()}  (expected [1, -1, 1])")
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return result


if __name__ == "__main__":
    main()
