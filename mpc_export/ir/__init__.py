from .graph import Graph, Node

__all__ = ["Graph", "Node"]
