"""torch.compile for the training step, kept off the pass that is differentiated twice.

The objective receives the compiled module and runs its exact gradient penalty on the module underneath
(:func:`albar.objectives.albar.uncompiled`); the run keeps the eager module for everything else (validation,
checkpoints, gradient clipping), so compiling changes no file a run writes.
"""

from __future__ import annotations

from torch import nn

from albar.config import CompileConfig


def check_backend(cfg: CompileConfig) -> None:
    """ValueError naming ``compile.backend`` when torch.compile has no such backend (said before any data are
    read, not at the first step)."""
    if not cfg.enabled:
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if cfg.backend not in known:
        raise ValueError(f"compile.backend: torch.compile has no backend {cfg.backend!r}; known: {', '.join(known)}")


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
