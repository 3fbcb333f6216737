"""torch.compile for the training step, kept off the pass that is differentiated twice.

The objective receives the compiled module and runs its exact gradient penalty's pass with compilation off
(:func:`albar.objectives.albar.double_backward_safe`); the run keeps the eager module for everything else (validation,
checkpoints, gradient clipping), so compiling changes no file a run writes.
"""

from __future__ import annotations

from torch import nn

from albar.config import CompileConfig


def check_backend(cfg: CompileConfig) -> None:
    """ValueError naming ``compile.backend`` when torch.compile has no such backend (said before any data are
    read, not at the first step; also while compiling is off: a typo there would surface later)."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if cfg.backend not in known:
        raise ValueError(f"compile.backend: torch.compile has no backend {cfg.backend!r}; known: {', '.join(known)}")


def check_precision(cfg: CompileConfig, device_type: str, mixed_precision: str) -> None:
    """ValueError for compile with bf16/fp16 autocast on the CPU: there torch 2.14's compiled Conv3d backward
    gives wrong weight gradients on small inputs (3.9e35 instead of 18.75 for a 3x3x3 conv on 2x2x2 maps; NaN in
    small3d at its first step), finite ones too, which no non-finite check would catch."""
    if cfg.enabled and device_type == "cpu" and mixed_precision != "no":
        raise ValueError(f"compile.enabled with mixed_precision={mixed_precision} on the CPU: compiled 3D "
                         "convolutions get wrong gradients under CPU autocast in this PyTorch (NOTES.md); on a CPU use "
                         "one or the other (compile buys little there)")


def compile_for_steps(model: nn.Module, cfg: CompileConfig) -> nn.Module:
    """``model`` compiled per ``cfg`` (sharing its parameters), or ``model`` itself when compiling is off."""
    if not cfg.enabled:
        return model
    import torch
    from torch._dynamo.eval_frame import OptimizedModule

    check_backend(cfg)
    if isinstance(model, OptimizedModule):  # compiled already (accelerate launch --dynamo_backend ...)
        return model
    return torch.compile(model, backend=cfg.backend, mode=cfg.mode, dynamic=cfg.dynamic, fullgraph=cfg.fullgraph)
