"""Data-parallel training helpers on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

forcefit scales out with ``torch.distributed`` only: processes are launched by ``torchrun``
(or :func:`spawn_local` for tests), each rank holds a fixed shard of the training items, the
model is wrapped in ``DistributedDataParallel`` and gradients are averaged across ranks. No
units of its own.

Sharding contract: with ``world`` ranks, rank ``r`` owns items ``r, r + world, r + 2 world, ...``
(:func:`shard_indices`). The shard is fixed for the whole run, so per-shard caches (descriptors)
are computed once. Shard sizes differ by at most one item.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (the rank that logs and writes files)."""
    return rank() == 0


def shard_indices(n: int, rank_: int, world: int) -> range:
    """Indices of the items rank ``rank_`` of ``world`` owns: ``range(rank_, n, world)``."""
    if world < 1 or not 0 <= rank_ < world:
        raise ValueError(f"shard_indices: rank {rank_} is not in [0, {world})")
    return range(rank_, n, world)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (identity when not distributed) and return it."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Maximum of ``t`` over ranks in place (identity when not distributed)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Stack the same-shape tensor ``t`` of every rank: (world, *t.shape)."""
    if not is_distributed():
        return t.unsqueeze(0)
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return torch.stack(out)


def broadcast_state(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op when not distributed)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


class MethodRouter(torch.nn.Module):
    """Wraps a model so that DDP's ``forward`` can run any of its methods.

    ``router(*args, _forcefit_method="predict", **kw)`` calls ``model.predict(*args, **kw)``;
    the default is ``forward``. ``calls`` counts the calls, so the trainer can tell when a loss
    function bypassed the DDP wrapper (its gradients would then not be averaged).
    """

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, *args: Any, _forcefit_method: str = "forward", **kwargs: Any) -> Any:
        self.calls += 1
        return getattr(self.inner, _forcefit_method)(*args, **kwargs)


class ForcefitDDP(DistributedDataParallel):
    """``DistributedDataParallel`` over a :class:`MethodRouter`, looking like the model.

    ``wrapper(...)`` runs the model's ``forward``; ``wrapper.some_method(...)`` runs the model's
    method through DDP's forward as well (so its gradients are averaged); other attributes
    (``cutoff``, ...) are the model's. Submodules reached through it (``wrapper.atomic(...)``)
    are the bare submodules: calling them bypasses DDP, and the trainer then raises.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        router = super().__getattr__("module")
        value = getattr(router.inner, name)
        if inspect.ismethod(value) and value.__self__ is router.inner:
            return functools.partial(self.__call__, _forcefit_method=name)
        return value

    @property
    def router_calls(self) -> int:
        """How many times the model was run through this wrapper."""
        return super().__getattr__("module").calls


def wrap_ddp(model: torch.nn.Module, find_unused_parameters: bool = False) -> ForcefitDDP:
    """Wrap ``model`` in DDP on the device of its parameters (``device_ids`` set on CUDA)."""
    device = next(model.parameters()).device
    device_ids = [device] if device.type == "cuda" else None
    return ForcefitDDP(MethodRouter(model), device_ids=device_ids,
                       find_unused_parameters=find_unused_parameters)


def allreduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over ranks in one flat all-reduce (missing grads = 0).

    The explicit alternative to DDP (``TrainConfig.distributed_mode = "allreduce"``); the
    trainer scales each rank's loss so that the sum is the gradient of the global batch mean.
    """
    if not is_distributed():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (n_parameters,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the process group from ``torchrun``'s environment (RANK, WORLD_SIZE, ...).

    Backend: NCCL when CUDA is available, else gloo, unless given. Returns True when a group
    was initialised, False when the environment does not describe a distributed launch.
    On CUDA, the current device is set to ``LOCAL_RANK``.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if dist.is_initialized():
        return True
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def cleanup() -> None:
    """Destroy the process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A free TCP port on localhost (for :func:`spawn_local`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, fn: Callable, world: int, port: int, backend: str,
             args: tuple) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend=backend, rank=local_rank, world_size=world)
    try:
        fn(local_rank, world, *args)
        # every rank done with its collectives before any tears gloo down (a rank exiting
        # while its peer still holds the connection aborts the peer: seen as SIGABRT)
        dist.barrier()
    finally:
        cleanup()


def spawn_local(fn: Callable, world: int, args: tuple = (), backend: str = "gloo") -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` processes on localhost, group initialised.

    Uses ``torch.multiprocessing.spawn``; ``fn`` must be importable (defined at module level).
    An exception in any rank is re-raised here.
    """
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(fn, world, free_port(), backend, args), nprocs=world, join=True)
