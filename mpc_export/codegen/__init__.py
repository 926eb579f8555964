from .render import render_program

__all__ = ["render_program"]
