"""Video classifiers: one registry (torchvision's models, HF transformers' video models, a small CPU model)."""

from albar.models.registry import (
    build_model,
    list_models,
    load_checkpoint_weights,
    model_from_state,
    replace_head,
)
from albar.models.small import Small3DCNN

__all__ = ["Small3DCNN", "build_model", "list_models", "load_checkpoint_weights", "model_from_state",
           "replace_head"]
