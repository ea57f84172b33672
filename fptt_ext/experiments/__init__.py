"""Reproductions of the papers' experiments (``addtask``: the Add-task, docs/addtask.md)."""

from .addtask import plot_addtask, run_addtask

__all__ = ["plot_addtask", "run_addtask"]
