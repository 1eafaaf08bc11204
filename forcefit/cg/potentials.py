"""A small neural-network pair potential for coarse-grained force matching.

Units: those of the data it is fitted to (the user's length and energy; ``units`` records
them). The network's input is the dimensionless r / cutoff.

E_pair(r) = (1 - r/rc)^3 * NN(r/rc) for r < rc, else 0, where NN is a multilayer perceptron
R -> R (``hidden`` widths, tanh or SiLU activations). The envelope (1 - r/rc)^3 makes the
energy, the force and its derivative vanish at the cutoff (smooth forces in MD; the
polynomial-envelope idea of DimeNet, Gasteiger et al., ICLR 2020, in its simplest form). Half of each
pair energy goes to each site (the :class:`~forcefit.potentials.PairPotential` convention).
One network per pair of species (``species`` as atomic numbers, or one shared network).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from ..potentials import PairPotential, register

__all__ = ["NetworkPair"]

_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU}


@register
class NetworkPair(PairPotential):
    """Pair energy (1 - r/rc)^3 NN(r/rc) with a small MLP per species pair.

    ``hidden``: widths of the hidden layers; ``activation``: "tanh" or "silu"; ``seed``: the
    initial weights (torch generator), so the same config gives the same initial network;
    ``units``: recorded in :meth:`to_config`.
    """

    def __init__(self, cutoff: float, hidden: Sequence[int] = (16, 16), activation: str = "tanh",
                 species=None, seed: int = 0, units: dict | None = None) -> None:
        super().__init__(cutoff, species)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"NetworkPair: activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        widths = [int(h) for h in hidden]
        if not widths or min(widths) < 1:
            raise ValueError(f"NetworkPair: hidden must be positive widths, got {hidden!r}")
        self.hidden, self.activation, self.seed = widths, activation, int(seed)
        self.units = dict(units) if units else None
        n_pairs = int(self._pair_index.max()) + 1
        gen = torch.Generator().manual_seed(self.seed)
        dtype = torch.get_default_dtype()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        sizes = [1, *widths, 1]
        for fan_in, fan_out in itertools.pairwise(sizes):  # a few layers, at construction
            bound = 1.0 / fan_in**0.5
            w = (torch.rand((n_pairs, fan_in, fan_out), generator=gen, dtype=torch.float64)
                 * 2 - 1) * bound
            self.weights.append(nn.Parameter(w.to(dtype)))
            self.biases.append(nn.Parameter(torch.zeros((n_pairs, fan_out), dtype=dtype)))
        self._act = _ACTIVATIONS[activation]()

    def network(self, x: torch.Tensor, pair: torch.Tensor | None) -> torch.Tensor:
        """NN(x) for inputs x (E,) with the network of each edge's species pair (E,), or the
        single network when ``pair`` is None (plain matrix products, no per-edge weights)."""
        h = x[:, None]  # (E, 1)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            w, b = w.to(x.dtype), b.to(x.dtype)  # (pairs, in, out), (pairs, out)
            if pair is None:
                h = h @ w[0] + b[0]  # (E, out)
            else:
                h = torch.einsum("ea,eab->eb", h, w[pair]) + b[pair]  # (E, out)
            if k < last:
                h = self._act(h)
        return h[:, 0]  # (E,)

    def pair_energy(self, r, pair, *_):
        """(edges,) energies; ``pair`` (edges,) species-pair index, or None for one network."""
        if pair is None and self.species is not None:
            pair = torch.zeros(r.shape, dtype=torch.int64, device=r.device)
        if self.species is None:
            pair = None  # one network for every pair
        x = r / self.cutoff  # (E,)
        return (1.0 - x) ** 3 * self.network(x, pair)

    def to_config(self) -> dict:
        cfg = {**self._base_config(), "hidden": list(self.hidden), "activation": self.activation,
               "seed": self.seed}
        if self.units:
            cfg["units"] = dict(self.units)
        return cfg
