"""Every IR op, imported explicitly so the registry ``OPS`` is complete on import."""

from . import add, conv_block, dense, float_ops, global_pool, input, pool, shortcut_a  # noqa: F401
from .base import OPS, Op
from .protocol import Comparison, Products, Schedule, Stage, Truncation

__all__ = ["OPS", "Op", "Stage", "Schedule", "Products", "Truncation", "Comparison"]
