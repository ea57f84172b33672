"""The Add-task (adding problem) of Hochreiter & Schmidhuber, in the form used by
Kag & Saligrama (2021) and the FPTT/LTC-SNN papers.

Each sequence has ``T`` steps of 2 input channels:

* channel 0: values drawn uniformly from ``[0, 1]``;
* channel 1: a marker that is 1 at exactly two steps, one drawn uniformly from
  the first half ``[0, T // 2)`` and one from the second half ``[T // 2, T)``,
  and 0 elsewhere.

The target is the sum of the two marked values (so ``y`` lies in ``[0, 2]``;
always predicting 1 gives an MSE of 1/6).

Example:
    >>> x, y = add_task_batch(4, 10, generator=torch.Generator().manual_seed(0))
    >>> x.shape, y.shape
    (torch.Size([10, 4, 2]), torch.Size([4]))
    >>> x[:, :, 1].sum(0).tolist()
    [2.0, 2.0, 2.0, 2.0]
    >>> bool(torch.allclose((x[:, :, 0] * x[:, :, 1]).sum(0), y))
    True
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["AddTask", "add_task_batch", "batch_seed"]


def _check(batch_size: int, T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"the Add-task needs a sequence length T >= 2 (one marker per half), got T={T!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def add_task_batch(batch_size: int, T: int, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the Add-task: ``x`` of shape ``[T, B, 2]`` and ``y`` of shape ``[B]``.

    ``generator`` (a CPU ``torch.Generator``) makes the batch reproducible; without
    it the global torch RNG is used.

    >>> g = torch.Generator().manual_seed(1)
    >>> x, y = add_task_batch(3, 2, generator=g)     # T = 2: both steps are marked
    >>> x[:, :, 1].tolist(), bool(torch.allclose(x[:, :, 0].sum(0), y))
    ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], True)
    """
    _check(batch_size, T)
    B, half = int(batch_size), int(T) // 2
    values = torch.rand(T, B, generator=generator, dtype=dtype)
    first = torch.randint(0, half, (B,), generator=generator)
    second = torch.randint(half, T, (B,), generator=generator)
    cols = torch.arange(B)
    marker = torch.zeros(T, B, dtype=dtype)
    marker[first, cols] = 1.0
    marker[second, cols] = 1.0
    y = values[first, cols] + values[second, cols]
    return torch.stack((values, marker), dim=-1), y


def batch_seed(seed: int, index: int) -> int:
    """The 32-bit generator seed of batch ``index`` of stream ``seed``.

    Mixed with NumPy's ``SeedSequence`` (torch's CPU generator keeps only 32 bits
    of a seed, so ``seed << 32 | index`` would collide across streams).

    >>> batch_seed(0, 1) != batch_seed(1, 0)
    True
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and batch index must be >= 0, got seed={seed}, index={index}")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


class AddTask(torch.utils.data.IterableDataset):
    """An endless, reproducible stream of Add-task batches.

    Batch ``i`` depends only on ``(seed, i)`` (its own seeded ``torch.Generator``),
    so a resumed run sees exactly the batches an uninterrupted run would. Iterating
    yields batches ``start, start + 1, ...`` (``num_batches`` of them, or forever).
    Use it directly, or in a ``DataLoader(dataset, batch_size=None)``.

    Example:
        >>> data = AddTask(T=8, batch_size=4, seed=0)
        >>> x, y = data.batch(5)
        >>> bool(torch.equal(x, data.batch(5)[0])), x.shape
        (True, torch.Size([8, 4, 2]))
        >>> [x.shape[1] for x, _ in AddTask(8, 2, seed=0, num_batches=3)]
        [2, 2, 2]
    """

    def __init__(self, T: int, batch_size: int, seed: int = 0, *, start: int = 0, num_batches: int | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        _check(batch_size, T)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if start < 0 or (num_batches is not None and num_batches < 0):
            raise ValueError(f"start and num_batches must be >= 0, got start={start}, num_batches={num_batches}")
        self.T, self.batch_size, self.seed = int(T), int(batch_size), int(seed)
        self.start, self.num_batches, self.dtype = int(start), num_batches, dtype

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number ``index`` (0-based) of this stream."""
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        return add_task_batch(self.batch_size, self.T, generator=g, dtype=self.dtype)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        i = self.start
        while self.num_batches is None or i < self.start + self.num_batches:
            yield self.batch(i)
            i += 1

    def __repr__(self) -> str:
        return f"AddTask(T={self.T}, batch_size={self.batch_size}, seed={self.seed})"
