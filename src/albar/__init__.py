"""albar: train video models that recognise the motion, and measure how much they lean on static cues."""

from albar.objectives import ALBARLoss, albar_loss, static_clip

__version__ = "0.1.0"
__all__ = ["ALBARLoss", "__version__", "albar_loss", "static_clip"]
