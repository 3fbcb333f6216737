"""Training: the accelerate loop, checkpoints, the learning-rate rule, and whole runs from a config."""

from albar.training.checkpoint import load_checkpoint, save_checkpoint
from albar.training.run import evaluate_checkpoint, fit
from albar.training.schedule import scaled_lr, warmup_cosine
from albar.training.trainer import NonFiniteLossError, TrainResult, make_accelerator, train

__all__ = [
    "NonFiniteLossError", "TrainResult", "evaluate_checkpoint", "fit", "load_checkpoint", "make_accelerator",
    "save_checkpoint", "scaled_lr", "train", "warmup_cosine",
]
