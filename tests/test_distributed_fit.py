"""fit_potential under torch.distributed with per-species networks (element option 2)."""

from __future__ import annotations

import os

import pytest
import torch
from test_models import ToyRadial, cu_structures

from forcefit.fit import FitSettings, ModelSettings, OutputSettings, TrainingSettings, fit_potential
from forcefit.train import distributed as dd


def _structures():
    """Pure Cu and pure Ag cells: a batch of one structure holds one species only."""
    structs = cu_structures(8, seed=5)
    for k, s in enumerate(structs):
        if k % 2:
            s.numbers[:] = 47
        s.group = "all"
    return structs


def _settings(out_dir, fused):
    return FitSettings(
        descriptors=ToyRadial(cutoff=4.0, species=(29, 47)),
        model=ModelSettings(type="network", layer_sizes="num_desc 6 1", activation="silu",
                            multi_element_option=2),
        training=TrainingSettings(learning_rate=1e-2, num_epochs=3, batch_size=1,
                                  shuffle=False, fused_loss=fused, report_test_loss=False),
        groups={"all": "0.75 0.25 1 1 0"}, outputs=OutputSettings(dump_configs=False),
        output_dir=out_dir, seed=0, quiet=True)


def _worker(rank, world, out_dir):
    for fused in (True, False):
        res = fit_potential(_structures(), _settings(os.path.join(out_dir, f"f{fused}"), fused))
        state = {k: v.clone() for k, v in res.model.state_dict().items()}
        torch.save(state, os.path.join(out_dir, f"rank{rank}_{fused}.pt"))


def test_option_2_under_ddp_with_a_species_missing_from_a_rank_batch(tmp_path):
    if not dd.dist.is_available() or not dd.dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    dd.spawn_local(_worker, 2, args=(str(tmp_path),))
    for fused in (True, False):
        r0 = torch.load(tmp_path / f"rank0_{fused}.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"rank1_{fused}.pt", weights_only=True)
        for key in r0:  # the ranks agree
            torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0)
    a = torch.load(tmp_path / "rank0_True.pt", weights_only=True)
    b = torch.load(tmp_path / "rank0_False.pt", weights_only=True)
    for key in a:  # the fused loss and autograd train the same model
        torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-12)
