"""albar: train video models that recognise the motion, and measure how much they lean on static cues.

The objective's names are imported on first use (module ``__getattr__``): ``import albar`` and the ``albar``
command's parser then stay free of torch, which takes seconds to import.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ALBARLoss", "__version__", "albar_loss", "static_clip"]

_LAZY = {"ALBARLoss", "albar_loss", "static_clip"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from albar import objectives

        return getattr(objectives, name)
    raise AttributeError(f"module 'albar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
