"""Spike functions: exact Heaviside forward, surrogate gradient backward.

The default surrogate of the papers is the multi-Gaussian of Yin et al. (2021).
For ``x = u - theta``::

    dS/dx = gamma * [ (1+h) N(x; 0, sig) - h N(x; sig, s*sig) - h N(x; -sig, s*sig) ]

with ``sig = 0.3, h = 0.15, s = 6.0, gamma = 0.5``. Any callable ``x -> spikes``
(snnTorch's ``snntorch.surrogate.atan()``, SpikingJelly's ``surrogate.ATan()``)
can be used in its place by the neurons of this package.

Example:
    >>> import torch
    >>> from fptt_ext.neurons.surrogate import multi_gaussian
    >>> spike = multi_gaussian()
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> spike(x)
    tensor([0., 1., 1.], grad_fn=<MultiGaussianSpikeBackward>)
"""

from __future__ import annotations

import math

import torch

__all__ = ["MultiGaussian", "multi_gaussian", "multi_gaussian_grad"]


def _normal_pdf(x: torch.Tensor, mu: float, sd: float) -> torch.Tensor:
    return torch.exp(-((x - mu) ** 2) / (2.0 * sd * sd)) / (math.sqrt(2.0 * math.pi) * sd)


def multi_gaussian_grad(
    x: torch.Tensor, sigma: float = 0.3, h: float = 0.15, s: float = 6.0, gamma: float = 0.5
) -> torch.Tensor:
    """The closed-form surrogate derivative ``dS/dx`` of the multi-Gaussian.

    >>> round(float(multi_gaussian_grad(torch.tensor(0.0))), 4)
    0.7319
    """
    return gamma * (
        (1.0 + h) * _normal_pdf(x, 0.0, sigma)
        - h * _normal_pdf(x, sigma, s * sigma)
        - h * _normal_pdf(x, -sigma, s * sigma)
    )


class MultiGaussianSpike(torch.autograd.Function):
    """Heaviside ``x >= 0`` forward (the papers' eq. 4), multi-Gaussian backward."""

    @staticmethod
    def forward(ctx, x, sigma, h, s, gamma):
        ctx.save_for_backward(x)
        ctx.params = (sigma, h, s, gamma)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * multi_gaussian_grad(x, *ctx.params), None, None, None, None


class MultiGaussian:
    """Callable spike function ``x -> H(x)`` with the multi-Gaussian surrogate.

    A plain callable object (not a closure) so that neurons holding it stay
    picklable and printable, and so SpikingJelly nodes can take it as
    ``surrogate_function``.

    >>> MultiGaussian()
    MultiGaussian(sigma=0.3, h=0.15, s=6.0, gamma=0.5)
    """

    def __init__(self, sigma: float = 0.3, h: float = 0.15, s: float = 6.0, gamma: float = 0.5):
        if sigma <= 0 or s <= 0:
            raise ValueError(f"sigma and s must be positive, got sigma={sigma}, s={s}")
        self.sigma, self.h, self.s, self.gamma = float(sigma), float(h), float(s), float(gamma)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return MultiGaussianSpike.apply(x, self.sigma, self.h, self.s, self.gamma)

    def __repr__(self) -> str:
        return f"MultiGaussian(sigma={self.sigma}, h={self.h}, s={self.s}, gamma={self.gamma})"


def multi_gaussian(sigma: float = 0.3, h: float = 0.15, s: float = 6.0, gamma: float = 0.5):
    """snnTorch-style factory: ``spike_grad=fptt_ext.surrogate.multi_gaussian()``.

    Example:
        >>> import torch, fptt_ext
        >>> spike = fptt_ext.surrogate.multi_gaussian(sigma=0.5)
        >>> x = torch.tensor([-0.2, 0.3], requires_grad=True)
        >>> s = spike(x); s.sum().backward()
        >>> s.tolist(), x.grad.gt(0).tolist()            # Heaviside forward, smooth backward
        ([0.0, 1.0], [True, True])
    """
    return MultiGaussian(sigma=sigma, h=h, s=s, gamma=gamma)
