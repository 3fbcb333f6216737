"""Training: the accelerate loop and the learning-rate rule."""

from albar.training.schedule import scaled_lr, warmup_cosine
from albar.training.trainer import NonFiniteLossError, TrainResult, make_accelerator, train

__all__ = ["NonFiniteLossError", "TrainResult", "make_accelerator", "scaled_lr", "train", "warmup_cosine"]
