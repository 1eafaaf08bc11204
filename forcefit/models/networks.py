"""Per-species atomic networks: standardised descriptors -> per-atom energy (dimensionless).

Units: inputs are standardised descriptors (dimensionless); the output is scaled to eV by the
potential that owns the network (:class:`forcefit.models.potential.FittedPotential`).

Layer syntax follows FitSNAP's ``layer_sizes``: ``"num_desc 64 64 1"`` means an input layer of
the number of descriptors, two hidden layers of 64 and one output; the activation follows every
layer except the last. Element options follow FitSNAP's ``multi_element_option``:

1. one network shared by all species;
2. one network per species: atoms are grouped by species once per call and each group goes
   through its network (a loop over species, never over atoms);
3. one shared network whose input is the descriptors concatenated with a one-hot species vector.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"softplus": nn.Softplus, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation_and_slope(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a(z), a'(z)) for the activations above: softplus' = sigmoid; silu = z s(z),
    silu' = s (1 + z (1 - s)); tanh' = 1 - tanh^2; sigmoid' = s (1 - s)."""
    if name == "softplus":
        return nn.functional.softplus(z), torch.sigmoid(z)
    if name == "silu":
        s = torch.sigmoid(z)
        return z * s, s * (1 + z * (1 - s))
    if name == "tanh":
        t = torch.tanh(z)
        return t, 1 - t * t
    s = torch.sigmoid(z)
    return s, s * (1 - s)


def parse_layers(layer_sizes: str | list, n_inputs: int) -> list[int]:
    """``"num_desc 64 64 1"`` -> ``[n_inputs, 64, 64, 1]``; the last size must be 1."""
    parts = layer_sizes.split() if isinstance(layer_sizes, str) else list(layer_sizes)
    if len(parts) < 2:
        raise ValueError(f"layer_sizes {layer_sizes!r}: need at least an input and an output")
    sizes = []
    for p in parts:
        if p == "num_desc":
            sizes.append(int(n_inputs))
            continue
        try:
            sizes.append(int(p))
        except (TypeError, ValueError):
            raise ValueError(f"layer_sizes {layer_sizes!r}: {p!r} is neither an integer nor "
                             "'num_desc'") from None
    if sizes[0] != n_inputs:
        raise ValueError(f"layer_sizes {layer_sizes!r}: first layer {sizes[0]} != number of "
                         f"inputs {n_inputs} (write 'num_desc')")
    if sizes[-1] != 1:
        raise ValueError(f"layer_sizes {layer_sizes!r}: the last layer must be 1 (an energy)")
    if any(s < 1 for s in sizes):
        raise ValueError(f"layer_sizes {layer_sizes!r}: sizes must be positive")
    return sizes


def make_mlp(sizes: list[int], activation: str) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class AtomicNetwork(nn.Module):
    """Per-atom energies from (atoms, F) standardised descriptors and (atoms,) species indices.

    ``forward(x, species) -> (atoms,)``.
    """

    def __init__(self, n_features: int, n_species: int, layer_sizes: str = "num_desc 64 64 1",
                 activation: str = "softplus", element_option: int = 1) -> None:
        super().__init__()
        if element_option not in (1, 2, 3):
            raise ValueError(f"multi_element_option must be 1, 2 or 3, got {element_option}")
        self.n_features, self.n_species = int(n_features), int(n_species)
        self.layer_sizes, self.activation = layer_sizes, activation
        self.element_option = int(element_option)
        n_in = self.n_features + (self.n_species if element_option == 3 else 0)
        text = layer_sizes if isinstance(layer_sizes, str) else " ".join(map(str, layer_sizes))
        sizes = parse_layers(text.replace("num_desc", str(n_in)), n_in)
        n_nets = self.n_species if element_option == 2 else 1
        self.nets = nn.ModuleList([make_mlp(sizes, activation) for _ in range(n_nets)])

    def config(self) -> dict:
        ls = self.layer_sizes if isinstance(self.layer_sizes, str) else list(self.layer_sizes)
        return {"type": "AtomicNetwork", "n_features": self.n_features,
                "n_species": self.n_species, "layer_sizes": ls,
                "activation": self.activation, "element_option": self.element_option}

    def _inputs(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        if self.element_option != 3:
            return x
        onehot = nn.functional.one_hot(species, self.n_species).to(x.dtype)  # (atoms, species)
        return torch.cat([x, onehot], dim=1)  # (atoms, F + species)

    def _net_energy_and_grad(self, net: nn.Sequential, h: torch.Tensor):
        """Energy (rows,) and its input gradient (rows, inputs) of one MLP, written out
        (forward pass, then the chain rule layer by layer) so that training needs only a
        first-order autograd graph instead of a double backward:
        de/dh_0 = W_1^T (a'(z_1) * W_2^T (a'(z_2) * ... W_L^T))."""
        linears = [m for m in net if isinstance(m, nn.Linear)]
        slopes = []
        for layer in linears[:-1]:
            h, slope = activation_and_slope(self.activation, layer(h))  # (rows, width)
            slopes.append(slope)
        last = linears[-1]
        e = last(h).squeeze(-1)  # (rows,)
        g = last.weight.expand(h.shape[0], -1)  # (rows, width): de/dh_{L-1}
        for layer, slope in zip(reversed(linears[:-1]), reversed(slopes)):
            g = (g * slope) @ layer.weight  # (rows, width of the layer below)
        return e, g

    def energy_and_grad(self, x: torch.Tensor, species: torch.Tensor):
        """Per-atom energies (atoms,) and de/dx (atoms, F), with the explicit chain rule."""
        h = self._inputs(x, species)
        if self.element_option != 2:
            e, g = self._net_energy_and_grad(self.nets[0], h)
            return e, g[:, : self.n_features]
        e, g = x.new_zeros(x.shape[0]), torch.zeros_like(x)  # (atoms,), (atoms, F)
        for s, net in enumerate(self.nets):  # loop over species only
            rows = torch.nonzero(species == s).squeeze(1)  # (atoms_s,)
            if rows.numel():
                es, gs = self._net_energy_and_grad(net, h[rows])
                e = e.index_put((rows,), es)
                g = g.index_put((rows,), gs)
        return e, g

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        if self.element_option == 1:
            return self.nets[0](x).squeeze(-1)  # (atoms,)
        if self.element_option == 3:
            onehot = nn.functional.one_hot(species, self.n_species).to(x.dtype)  # (atoms, species)
            return self.nets[0](torch.cat([x, onehot], dim=1)).squeeze(-1)  # (atoms,)
        out = x.new_zeros(x.shape[0])  # (atoms,)
        for s, net in enumerate(self.nets):  # loop over species only
            rows = torch.nonzero(species == s).squeeze(1)  # (atoms_s,)
            if rows.numel():
                out = out.index_put((rows,), net(x[rows]).squeeze(-1))
        return out
