"""Training: the generic trainer, checkpoints and restart, data-parallel helpers.

Units: the trainer has none of its own (losses in the loss function's units, times in
seconds). ``losses`` and ``metrics`` (the fitting core's, owned there) are submodules imported
on demand: ``from forcefit.train import losses``.
"""

from .checkpoint import CheckpointError, load_checkpoint, read_extra_state, save_checkpoint
from .trainer import History, LRSchedule, TrainConfig, Trainer, TrainingError, default_collate

__all__ = ["CheckpointError", "History", "LRSchedule", "TrainConfig", "Trainer",
           "TrainingError", "default_collate", "load_checkpoint", "read_extra_state",
           "save_checkpoint"]
