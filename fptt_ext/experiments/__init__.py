"""Reproductions of the papers' experiments (``addtask``: Add-task, SPEC section 3)."""

from .addtask import plot_addtask, run_addtask

__all__ = ["plot_addtask", "run_addtask"]
