"""Crash-safe file writing shared by the experiment drivers."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """``write(binary_file)`` into a temporary file, then rename it over ``path``:
    an interrupted run never leaves a half-written checkpoint or log behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
