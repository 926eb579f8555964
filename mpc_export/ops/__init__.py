"""Every IR op, imported explicitly so the registry ``OPS`` is complete on import."""

from . import conv_block, dense, float_ops, input  # noqa: F401
from .base import OPS, Op, Stage

__all__ = ["OPS", "Op", "Stage"]
