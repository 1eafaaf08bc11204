"""A sum of energy models: E = sum_t E_t, per atom.

Units: those of the terms (eV per atom; cutoff in Angstrom).

``Sum(terms)`` has cutoff = max over the terms; every term sees the same graph and ignores
edges beyond its own cutoff (part of the energy-model protocol, checked by
:func:`forcefit.testing.check_extra_edges_ignored`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..neighbors import Graph
from .registry import from_config, register


@register
class Sum(nn.Module):
    """Sum of energy models; parameters live under ``terms.<k>.`` in the state dict."""

    def __init__(self, terms: Sequence[nn.Module]) -> None:
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError("Sum: needs at least one energy model")
        for k, t in enumerate(terms):
            if not (isinstance(t, nn.Module) and hasattr(t, "cutoff")):
                raise ValueError(f"Sum: term {k} ({t!r}) is not an energy model "
                                 "(an nn.Module with a cutoff)")
        self.terms = nn.ModuleList(terms)

    @property
    def cutoff(self) -> float:
        return max(float(t.cutoff) for t in self.terms)

    def forward(self, graph: Graph, vectors: Tensor) -> Tensor:
        """Per-atom energies (atoms,): the sum of the terms' per-atom energies."""
        out = self.terms[0](graph, vectors)  # (atoms,)
        for t in self.terms[1:]:  # loop over terms (a handful), not atoms
            out = out + t(graph, vectors)
        return out

    def permuted(self, perm) -> Sum:
        """A copy for atoms reordered by ``perm`` (terms over an explicit topology relabel it)."""
        return Sum([t.permuted(perm) if hasattr(t, "permuted") else t for t in self.terms])

    def to_config(self) -> dict:
        return {"type": "Sum", "terms": [t.to_config() for t in self.terms]}

    @classmethod
    def from_config_dict(cls, config: dict) -> Sum:
        terms = config.get("terms")
        if not isinstance(terms, list):
            raise TypeError("Sum config: 'terms' must be a list of model configs")
        return cls([from_config(c) for c in terms])

    def __add__(self, other: nn.Module) -> Sum:
        return Sum([*self.terms, other])
