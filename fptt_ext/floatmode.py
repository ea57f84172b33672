"""Subnormal floats on the CPU: whether this thread flushes them, and a block that sets it.

A subnormal float32 is nonzero and below ``torch.finfo(torch.float32).tiny`` (about 1.2e-38).
Spiking networks can make them, in membranes that decay towards zero and in the tails of
sigmoid and surrogate derivatives, and on x86 CPUs every multiply-add that meets one may take
a microcode assist (``fptt-ext bench subnormals`` measures it). ``torch.set_flush_denormal(True)``
makes the CPU read and write them as zero; only values below 1.2e-38 change.

The mode belongs to a thread, and a thread inherits it from the one that starts it. So
:func:`flush_subnormals` (what :class:`~fptt_ext.fptt.SequenceTrainer` trains under) covers the
calling thread and restores its mode on exit, leaving the rest of the program IEEE; the
``fptt-ext`` command sets it for the whole process before torch starts its threads. A script
that trains with several torch threads does the same with ``torch.set_flush_denormal(True)``
as its first line.

Example:
    >>> import torch
    >>> before = flushes_subnormals()
    >>> with flush_subnormals():
    ...     float(torch.full((1,), 1e-20) * 1e-20)              # 1e-40 would be subnormal
    0.0
    >>> flushes_subnormals() == before
    True
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["flush_subnormals", "flushes_subnormals"]


def flushes_subnormals() -> bool:
    """True if float32 arithmetic on this thread flushes subnormal results to zero.

    >>> isinstance(flushes_subnormals(), bool)
    True
    """
    return float(torch.full((1,), 1e-20) * 1e-20) == 0.0  # 1e-40 is subnormal in float32


@contextlib.contextmanager
def flush_subnormals(flush: bool = True):
    """Run the block with subnormal floats flushed to zero (``flush=False``: kept, as IEEE has
    them) on the calling thread, then restore the mode it had. Where torch cannot set the mode
    (not an x86 CPU) the block runs as it is.

    >>> import torch
    >>> with flush_subnormals(False):
    ...     float(torch.full((1,), 1e-20) * 1e-20) > 0
    True
    """
    before = flushes_subnormals()
    if before != flush:
        torch.set_flush_denormal(flush)
    try:
        yield
    finally:  # also where the block itself changed the mode
        torch.set_flush_denormal(before)
