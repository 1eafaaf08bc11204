"""Force matching of coarse-grained potentials, and closed-form least squares.

Units: the user's, as recorded in :attr:`forcefit.cg.CGData.units`; losses are in
(energy/length)^2, MAE and RMSE in energy/length. The fitted model is tagged with the units
(``model.units``) so that its ``to_config()`` and saved files carry them.

Force matching (multiscale coarse-graining; Izvekov and Voth, J. Phys. Chem. B 109, 2469
(2005); Noid et al., J. Chem. Phys. 128, 244114 (2008)) minimises over parameters theta

    chi^2(theta) = < 1/I sum_I |F_I^ref - F_I(R; theta)|^2 >_frames,    F_I = -dU/dR_I,

the mean over frames and sites of the squared force error, as chemtrain's example does. It runs
on forcefit's generic :class:`forcefit.train.Trainer` (minibatches of frames, Adam with betas
(0.9, 0.95) and a learning rate decaying exponentially from 0.02 to 5 % of it over the run, as
in the chemtrain seed), with a train / validation / test split of the frames; the test-set MAE
is reported.

For a model whose forces are linear in its parameters the minimum of chi^2 is a linear least
squares problem, solved in closed form: the harmonic bond is linear in (kb, kb*b0), since
F_j = -kb (r - b0) u_ij = kb (-r u_ij) + (kb b0) u_ij and F_i = -F_j
(:func:`least_squares_harmonic_bond`); a spline bond is linear in its knot energies
(:func:`least_squares_linear`, any parameter entering the forces linearly). Because both
minimise the same chi^2 on the same frames, a converged force-matching run must reproduce the
least-squares parameters.

Index names: ``frames`` (F), ``sites`` (I), ``types`` (bond types), ``params`` (P).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn

from ..potentials.base import evaluate
from ..potentials.bonded import HarmonicBond
from .data import CGData

__all__ = [
    "FitResult",
    "ForceMatchingConfig",
    "force_errors",
    "force_matching",
    "least_squares_harmonic_bond",
    "least_squares_linear",
    "predict_forces",
    "split_frames",
]


@dataclasses.dataclass
class ForceMatchingConfig:
    """Settings of a force-matching run (defaults: the chemtrain ethane example).

    - ``epochs``, ``batch_size`` (frames per minibatch)
    - ``learning_rate``: initial Adam rate; ``final_lr_fraction``: the rate decays exponentially
      to ``learning_rate * final_lr_fraction`` at the end of the run
    - ``betas``: Adam betas
    - ``split``: fractions of frames for (train, validation, test), summing to <= 1
    - ``split_mode``: "random" (seeded permutation) or "contiguous" (blocks in frame order)
    - ``seed``: seeds the split and the shuffling
    - ``exclude_bonded``: site pairs (i, j) that pair potentials must skip (e.g. bonded pairs)
    - ``max_time``: optional wall-time limit in seconds for training
    - ``optimizer``: "adam" (minibatches, the settings above) or "lbfgs" (full batch of the
      training frames, strong Wolfe line search, ``lbfgs_max_iter`` iterations per epoch; no
      learning-rate schedule): for small smooth models where Adam's noise is in the way
    """

    epochs: int = 20
    batch_size: int = 10
    learning_rate: float = 0.02
    final_lr_fraction: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    split: tuple[float, float, float] = (0.5, 0.1, 0.4)
    split_mode: str = "random"
    seed: int = 0
    exclude_bonded: tuple[tuple[int, int], ...] = ()
    max_time: float | None = None
    optimizer: str = "adam"
    lbfgs_max_iter: int = 20

    def __post_init__(self) -> None:
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError("ForceMatchingConfig: 'epochs' and 'batch_size' must be >= 1")
        if not (self.learning_rate > 0 and 0 < self.final_lr_fraction <= 1):
            raise ValueError("ForceMatchingConfig: need learning_rate > 0 and "
                             "0 < final_lr_fraction <= 1")
        fr = tuple(float(x) for x in self.split)
        if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or sum(fr) > 1 + 1e-9:
            raise ValueError(f"ForceMatchingConfig: 'split' must be 3 fractions (train > 0, "
                             f"val, test >= 0) summing to <= 1, got {self.split}")
        if self.split_mode not in ("random", "contiguous"):
            raise ValueError(f"ForceMatchingConfig: 'split_mode' must be 'random' or "
                             f"'contiguous', got {self.split_mode!r}")
        self.split = fr
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"ForceMatchingConfig: 'optimizer' must be 'adam' or 'lbfgs', got "
                             f"{self.optimizer!r}")


def split_frames(n_frames: int, fractions=(0.5, 0.1, 0.4), *, seed: int = 0,
                 mode: str = "random") -> dict[str, torch.Tensor]:
    """Frame indices for "train", "val", "test" (sorted int64 tensors, disjoint)."""
    n = int(n_frames)
    counts = [math.floor(f * n + 1e-9) for f in fractions]
    if counts[0] < 1:
        raise ValueError(f"split_frames: {n} frames leave no training frame with {fractions}")
    if mode == "random":
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    a, b = counts[0], counts[0] + counts[1]
    parts = (order[:a], order[a:b], order[b:b + counts[2]])
    return {k: torch.sort(p).values for k, p in zip(("train", "val", "test"), parts)}


def _exclude_mask(pairs, n_sites: int) -> torch.Tensor | None:
    if not pairs:
        return None
    mask = torch.zeros((n_sites, n_sites), dtype=torch.bool)
    for i, j in pairs:  # a handful of topology entries, once
        if not (0 <= i < n_sites and 0 <= j < n_sites):
            raise ValueError(f"exclude_bonded: pair ({i}, {j}) outside 0..{n_sites - 1}")
        mask[i, j] = mask[j, i] = True
    return mask


def predict_forces(model: nn.Module, data: CGData, frames: torch.Tensor, *,
                   exclude: torch.Tensor | None = None, create_graph: bool = False,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Model forces on the sites of ``frames``: (len(frames), sites, 3)."""
    graph = data.graph(frames, float(getattr(model, "cutoff", 0.0)), exclude, dtype=dtype)
    out = evaluate(model, graph, forces=True, stress=False, create_graph=create_graph)
    return out["forces"].reshape(len(frames), data.n_sites, 3)


def force_errors(model: nn.Module, data: CGData, frames: torch.Tensor | None = None, *,
                 exclude: torch.Tensor | None = None, chunk: int = 4096) -> dict[str, float]:
    """Force errors over ``frames`` (default all): MAE and RMSE per Cartesian component, and the
    force-matching loss (mean over frames and sites of |dF|^2), in the user's units."""
    frames = torch.arange(len(data)) if frames is None else torch.as_tensor(frames)
    if len(frames) == 0:
        raise ValueError("force_errors: no frames to evaluate")
    abs_sum = sq_sum = 0.0
    for start in range(0, len(frames), chunk):  # chunks of frames bound the memory
        idx = frames[start:start + chunk]
        diff = predict_forces(model, data, idx, exclude=exclude).detach() - data.forces[idx]
        abs_sum += float(diff.abs().sum())
        sq_sum += float((diff**2).sum())
    n_comp = len(frames) * data.n_sites * 3
    return {"mae": abs_sum / n_comp, "rmse": math.sqrt(sq_sum / n_comp),
            "loss": sq_sum / (len(frames) * data.n_sites)}


@dataclasses.dataclass
class FitResult:
    """What :func:`force_matching` returns.

    ``model`` (fitted, tagged with ``units``), ``history`` (the trainer's), ``split`` (frame
    indices), ``errors`` {"train"|"val"|"test": force_errors dict}, ``units``, ``seconds``.
    """

    model: nn.Module
    history: object
    split: dict[str, torch.Tensor]
    errors: dict[str, dict[str, float]]
    units: dict
    seconds: float

    @property
    def test_mae(self) -> float:
        return self.errors["test"]["mae"]


def _tag_units(model: nn.Module, units: dict) -> None:
    for m in model.modules():
        if hasattr(m, "units") or m is model:
            m.units = dict(units)


def force_matching(model: nn.Module, data: CGData, config: ForceMatchingConfig | None = None,
                   *, split: dict[str, torch.Tensor] | None = None, log=print) -> FitResult:
    """Fit ``model`` (any energy model; float64) to the forces of ``data`` by force matching.

    Uses :class:`forcefit.train.Trainer` with Adam(betas), an exponential learning-rate decay
    to ``final_lr_fraction`` and minibatches of ``batch_size`` frames. ``split`` overrides the
    frame split made from ``config.split``. Returns a :class:`FitResult` with the test MAE.
    """
    from ..train import TrainConfig, Trainer

    cfg = config or ForceMatchingConfig()
    model = model.double()
    parts = split or split_frames(len(data), cfg.split, seed=cfg.seed, mode=cfg.split_mode)
    exclude = _exclude_mask(cfg.exclude_bonded, data.n_sites)

    def loss_fn(m: nn.Module, frames: torch.Tensor) -> torch.Tensor:
        pred = predict_forces(m, data, frames, exclude=exclude, create_graph=True)  # (F, I, 3)
        return ((pred - data.forces[frames]) ** 2).sum(-1).mean()

    def collate(items) -> torch.Tensor:
        return torch.as_tensor([int(x) for x in items], dtype=torch.int64)

    if cfg.optimizer == "adam":
        tcfg = TrainConfig(
            optimizer="adam", learning_rate=cfg.learning_rate, num_epochs=cfg.epochs,
            batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, schedule="exponential",
            schedule_params=_decay_params(cfg.final_lr_fraction),
            adam_betas=tuple(cfg.betas), max_time=cfg.max_time)
    else:
        tcfg = TrainConfig(optimizer="lbfgs", learning_rate=1.0, num_epochs=cfg.epochs,
                           seed=cfg.seed, lbfgs_max_iter=cfg.lbfgs_max_iter,
                           max_time=cfg.max_time)
    val_items = parts["val"].tolist() if len(parts["val"]) else None
    start = time.perf_counter()
    trainer = Trainer(model, loss_fn, parts["train"].tolist(), val_items, tcfg,
                      collate=collate, log=log)
    history = trainer.fit()
    seconds = time.perf_counter() - start
    errors = {k: force_errors(model, data, v, exclude=exclude)
              for k, v in parts.items() if len(v)}
    _tag_units(model, data.units)
    return FitResult(model, history, parts, errors, dict(data.units), seconds)


def _decay_params(final_fraction: float) -> dict:
    """The trainer's exponential schedule applied per optimiser step:
    lr(k) = lr_0 f^(k / steps), from lr_0 down to ``final_fraction`` f of it over the run, as
    optax ``exponential_decay`` in the chemtrain seed."""
    return {"final_fraction": float(final_fraction), "per_step": True}


# ---------------------------------------------------------------------------------------------
# closed-form least squares
# ---------------------------------------------------------------------------------------------
def _lstsq(a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    sol, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if rank < a.shape[1] and what:
        raise ValueError(f"{what}: the frames do not determine all parameters (design matrix rank "
                         f"{rank} < {a.shape[1]}); use more frames or fewer parameters")
    return sol


def least_squares_harmonic_bond(model: HarmonicBond, data: CGData,
                                frames: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Closed-form force-matching solution for ``model``'s bond types on ``frames``.

    Minimises sum over frames, sites, components of (F_ref - F_model)^2 over (kb_t, c_t =
    kb_t b0_t) for every bond type t: the forces are F_j = sum_bonds [kb (-r u) + c u],
    F_i = -F_j, so the design matrix column of kb_t holds -(x_j - x_i) on j and +(x_j - x_i)
    on i, the column of c_t holds u on j and -u on i (mimimum image). Sets ``model``'s
    parameters to the solution and returns {"kb": (types,), "b0": (types,)}.
    Raises ValueError when a fitted kb or b0 is not positive (a harmonic bond cannot
    represent the data).
    """
    frames = torch.arange(len(data)) if frames is None else torch.as_tensor(frames)
    pos = data.positions[frames]  # (F, I, 3)
    n_frames, n_sites, _ = pos.shape
    bonds = model.topology
    if int(bonds.max()) >= n_sites:
        raise ValueError(f"least_squares_harmonic_bond: bond topology refers to site "
                         f"{int(bonds.max())}, the data have {n_sites} sites")
    b = pos[:, bonds[:, 1]] - pos[:, bonds[:, 0]]  # (F, B, 3)
    if data.cell is not None and bool(data.pbc.any()):
        cells = data.cell[frames][:, None].expand(-1, len(bonds), 3, 3).reshape(-1, 3, 3)
        from ..potentials.bonded import minimum_image

        b = minimum_image(b.reshape(-1, 3), cells,
                          data.pbc.expand(len(cells), 3)).reshape(n_frames, len(bonds), 3)
    u = b / b.norm(dim=-1, keepdim=True)  # (F, B, 3)
    n_types = model.n_types
    onehot = torch.nn.functional.one_hot(model.types, n_types).to(torch.float64)  # (B, T)
    # per bond: the kb column gets -b on site j, the c column gets u on site j; site i the negative
    per_bond = torch.stack([-b, u], dim=-1)  # (F, B, 3, 2)
    per_bond = (per_bond[..., None, :] * onehot[None, :, None, :, None]).reshape(
        n_frames, len(bonds), 3, 2 * n_types)  # (F, B, 3, 2T), columns (kb_0, c_0, kb_1, ...)
    design = torch.zeros((n_frames, n_sites, 3, 2 * n_types), dtype=torch.float64)
    design.index_add_(1, bonds[:, 1], per_bond)
    design.index_add_(1, bonds[:, 0], -per_bond)
    a = design.reshape(-1, 2 * n_types).numpy()
    rhs = data.forces[frames].reshape(-1).numpy()
    sol = _lstsq(a, rhs, "least_squares_harmonic_bond")
    kb, c = sol[0::2], sol[1::2]
    b0 = c / kb
    if (kb <= 0).any() or (b0 <= 0).any():
        raise ValueError(f"least_squares_harmonic_bond: fitted kb {kb.tolist()} / b0 "
                         f"{b0.tolist()} not positive; a harmonic bond does not fit these forces")
    with torch.no_grad():
        model.log_kb.copy_(torch.as_tensor(np.log(kb)))
        model.log_b0.copy_(torch.as_tensor(np.log(b0)))
    _tag_units(model, data.units)
    return {"kb": kb, "b0": b0}


def least_squares_linear(model: nn.Module, data: CGData, parameter: str,
                         frames: torch.Tensor | None = None, *, smoothness: float = 0.0,
                         roughness_order: int = 3, exclude: torch.Tensor | None = None) -> np.ndarray:
    """Closed-form force matching of one parameter tensor that the forces depend on linearly.

    ``parameter`` names an entry of ``model.named_parameters()`` (e.g. "values" of a
    :class:`~forcefit.potentials.bonded.SplineBond`). Forces are affine in it,
    F(p) = F(0) + J p, with J's columns F(e_k) - F(0) computed by evaluating the model once per
    entry; the solution minimises |F(0) + J p - F_ref|^2 + smoothness |D2 p|^2 (D2: second
    differences along the last axis, a roughness penalty; 0 for none). Minimum-norm solution
    where the data leave directions free (e.g. a constant energy shift). Checks the affinity at
    the solution and raises ValueError if the model is not linear in ``parameter``. Sets the
    parameter and returns the solution (parameter's shape).
    """
    frames = torch.arange(len(data)) if frames is None else torch.as_tensor(frames)
    params = dict(model.named_parameters())
    if parameter not in params:
        raise ValueError(f"least_squares_linear: model has no parameter {parameter!r} "
                         f"(has {sorted(params)})")
    p = params[parameter]
    shape = p.shape
    ref = data.forces[frames].reshape(-1)  # (F*I*3,)

    def forces_at(value: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p.copy_(value.reshape(shape))
        return predict_forces(model, data, frames, exclude=exclude).detach().reshape(-1)

    original = p.detach().clone()
    zero = torch.zeros(p.numel(), dtype=p.dtype)
    f0 = forces_at(zero)  # (F*I*3,)
    eye = torch.eye(p.numel(), dtype=p.dtype)
    jac = torch.stack([forces_at(eye[k]) - f0 for k in range(p.numel())], dim=1)  # (F*I*3, P)
    a = jac.numpy()
    rhs = (ref - f0).numpy()
    if smoothness > 0:
        last = shape[-1]
        order = int(roughness_order)
        diff = np.diff(np.eye(last), n=order, axis=0)  # (last - order, last) finite differences
        weight = math.sqrt(smoothness * float((a**2).sum()) / a.shape[1])
        blocks = np.kron(np.eye(p.numel() // last), diff) * weight
        a = np.vstack([a, blocks])
        rhs = np.concatenate([rhs, np.zeros(len(blocks))])
    sol = _lstsq(a, rhs, "")
    sol_t = torch.as_tensor(sol, dtype=p.dtype)
    check = forces_at(sol_t)
    expect = f0 + jac @ sol_t
    scale = float(expect.abs().max()) + 1e-30
    if float((check - expect).abs().max()) > 1e-6 * scale:
        with torch.no_grad():
            p.copy_(original)
        raise ValueError(f"least_squares_linear: the forces are not linear in {parameter!r}; "
                         "use force_matching instead")
    _tag_units(model, data.units)
    return sol.reshape(tuple(shape))
