"""Turn a batch of images ``[B, C, H, W]`` into an input sequence ``[T, B, ...]``.

* :func:`static` - the image as input current, repeated ``T`` times (SCNNs);
* :func:`rate` - Poisson rate coding with ``snntorch.spikegen.rate`` (R-MNIST), flattened;
* :func:`sequential` - one pixel per step, ``T = H*W`` (S-MNIST);
* :func:`permuted` - the pixels in a fixed permutation drawn from a seed (PS-MNIST).

Example:
    >>> import torch
    >>> x = torch.rand(2, 1, 28, 28)
    >>> rate(x, T=20).shape, static(x, T=3).shape, sequential(x).shape
    (torch.Size([20, 2, 784]), torch.Size([3, 2, 1, 28, 28]), torch.Size([784, 2, 1]))
    >>> p = permutation(784, seed=0)
    >>> torch.equal(permuted(x, seed=0)[:, :, 0].T[:, torch.argsort(p)], x.flatten(1))
    True
"""

from __future__ import annotations

import torch
from snntorch import spikegen

__all__ = ["ENCODINGS", "encode", "permutation", "permuted", "rate", "sequential", "static"]


def _check(x: torch.Tensor, T: int | None = None) -> None:
    if T is not None and (not isinstance(T, int) or T <= 0):
        raise ValueError(f"the number of time steps T must be a positive integer, got {T!r}")
    if x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"expected a float image batch [B, C, H, W], got {x.dtype} of shape {tuple(x.shape)}")


def static(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T, B, C, H, W]``: the same image at every step (a view, no copy).

    Example:
        >>> static(torch.rand(2, 1, 28, 28), T=5).shape
        torch.Size([5, 2, 1, 28, 28])
    """
    _check(x, T)
    return x.unsqueeze(0).expand(T, *x.shape)


def rate(x: torch.Tensor, T: int, gain: float = 1.0) -> torch.Tensor:
    """``[T, B, C*H*W]`` Bernoulli spikes with probability ``gain * intensity`` (clipped to [0, 1]).

    Example:
        >>> _ = torch.manual_seed(0); x = torch.tensor([[[[0.0, 1.0]]]])     # one image of two pixels
        >>> rate(x, T=3).squeeze(1).tolist()                             # black never fires, white always
        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """
    _check(x, T)
    return spikegen.rate(x.flatten(1).clamp(0, 1), num_steps=T, gain=gain)


def sequential(x: torch.Tensor) -> torch.Tensor:
    """``[H*W*C, B, 1]``: one pixel value per step in raster order.

    Example:
        >>> sequential(torch.arange(4.0).reshape(1, 1, 2, 2))[:, 0, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    _check(x)
    return x.flatten(1).T.unsqueeze(-1)


def permutation(n: int, seed: int = 0) -> torch.Tensor:
    """The fixed pixel permutation of PS-MNIST for ``seed`` (same on every machine).

    Example:
        >>> p = permutation(5, seed=0)
        >>> sorted(p.tolist()), torch.equal(p, permutation(5, seed=0))
        ([0, 1, 2, 3, 4], True)
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def permuted(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``[H*W*C, B, 1]``: the pixels in the order ``permutation(H*W*C, seed)``.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> permuted(x, seed=0)[:, 0, 0].tolist() == x.flatten()[permutation(4, seed=0)].tolist()
        True
    """
    _check(x)
    flat = x.flatten(1)
    return flat[:, permutation(flat.shape[1], seed)].T.unsqueeze(-1)


ENCODINGS = {"static": static, "rate": rate, "sequential": sequential, "permuted": permuted}


def encode(name: str, x: torch.Tensor, T: int) -> torch.Tensor:
    """Encode by name; ``T`` is ignored by the pixel-sequence encodings (their T is the pixel count).

    Example:
        >>> x = torch.rand(3, 1, 28, 28)
        >>> encode("rate", x, T=10).shape, encode("sequential", x, T=10).shape
        (torch.Size([10, 3, 784]), torch.Size([784, 3, 1]))
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; choose one of {sorted(ENCODINGS)}")
    return ENCODINGS[name](x, T) if name in ("static", "rate") else ENCODINGS[name](x)
