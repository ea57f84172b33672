"""Input encodings (fptt_ext.data.encodings): [B, C, H, W] images -> [T, B, ...] sequences."""

from __future__ import annotations

import math

import pytest
import torch

from fptt_ext.data.encodings import ENCODINGS, encode, permutation, permuted, rate, sequential, static


def _images(B=3, C=1, H=4, W=5, seed=0):
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- rate coding
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_rate_spike_probability_is_intensity(p):
    torch.manual_seed(0)
    T, B, n = 200, 4, 28 * 28
    s = rate(torch.full((B, 1, 28, 28), p), T=T)
    assert s.shape == (T, B, n)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    N = s.numel()
    std = math.sqrt(p * (1 - p) / N)
    assert abs(s.mean().item() - p) <= 5 * std + 1e-12  # 5 binomial standard deviations
    # per pixel too (200 draws each): no pixel is far off
    per_pixel = s.mean(0)
    assert (per_pixel - p).abs().max().item() <= 6 * math.sqrt(p * (1 - p) / T) + 1e-12


def test_rate_follows_each_pixel():
    """Mixed intensities in one image: each pixel fires at its own rate, in its own place."""
    torch.manual_seed(1)
    x = torch.tensor([0.1, 0.9, 0.5, 0.0]).repeat(196).reshape(1, 1, 28, 28)
    s = rate(x, T=2000)
    est = s.mean(0)[0].reshape(196, 4).mean(0)  # 2000 * 196 draws per intensity
    assert torch.allclose(est, torch.tensor([0.1, 0.9, 0.5, 0.0]), atol=0.005)


def test_rate_gain_and_clipping():
    torch.manual_seed(2)
    s = rate(torch.full((2, 1, 8, 8), 0.4), T=500, gain=0.5)
    assert abs(s.mean().item() - 0.2) < 0.02
    assert rate(torch.full((1, 1, 2, 2), 1.7), T=10).eq(1).all()  # intensities above 1 are clipped


def test_rate_uses_global_rng():
    x = _images()
    torch.manual_seed(5)
    a = rate(x, T=7)
    torch.manual_seed(5)
    b = rate(x, T=7)
    c = rate(x, T=7)
    assert torch.equal(a, b) and not torch.equal(b, c)


# ------------------------------------------------------------------------- static / sequential / permuted
def test_static_repeats_exactly():
    x = _images()
    s = static(x, T=6)
    assert s.shape == (6, *x.shape)
    for t in range(6):
        assert torch.equal(s[t], x)


def test_sequential_raster_order():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    s = sequential(x)
    assert s.shape == (12, 2, 1)
    # step t is pixel t in raster order (row by row)
    assert s[:, 0, 0].tolist() == list(range(12))
    assert s[:, 1, 0].tolist() == list(range(12, 24))
    assert s[5, 0, 0].item() == x[0, 0, 1, 1].item()


def test_permutation_fixed_by_seed():
    p0 = permutation(784, seed=0)
    assert torch.equal(p0, permutation(784, seed=0))
    assert not torch.equal(p0, permutation(784, seed=1))
    assert sorted(p0.tolist()) == list(range(784))  # a permutation
    assert not torch.equal(p0, torch.arange(784))
    # independent of the global RNG
    torch.manual_seed(123)
    a = permutation(784, seed=3)
    torch.manual_seed(456)
    assert torch.equal(a, permutation(784, seed=3))


def test_permuted_is_invertible():
    x = _images(B=2, H=28, W=28)
    for seed in (0, 7):
        s = permuted(x, seed=seed)
        assert s.shape == (784, 2, 1)
        p = permutation(784, seed)
        assert torch.equal(s[:, :, 0].T, x.flatten(1)[:, p])
        restored = s[:, :, 0].T[:, torch.argsort(p)]  # argsort undoes the permutation
        assert torch.equal(restored, x.flatten(1))
        assert torch.equal(restored.T.unsqueeze(-1), sequential(x))
    assert not torch.equal(permuted(x, seed=0), permuted(x, seed=7))


def test_encode_by_name():
    x = _images()
    assert set(ENCODINGS) == {"static", "rate", "sequential", "permuted"}
    assert encode("static", x, 3).shape == (3, 3, 1, 4, 5)
    assert encode("rate", x, 3).shape == (3, 3, 20)
    assert torch.equal(encode("sequential", x, 3), sequential(x))  # T ignored
    assert torch.equal(encode("permuted", x, 3), permuted(x, seed=0))
    with pytest.raises(ValueError, match="unknown encoding"):
        encode("latency", x, 3)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("T", [0, -1, 2.5, "3"])
@pytest.mark.parametrize("fn", [static, rate])
def test_bad_T(fn, T):
    with pytest.raises(ValueError, match="T"):
        fn(_images(), T=T)


@pytest.mark.parametrize("fn", [lambda x: static(x, 2), lambda x: rate(x, 2), sequential, permuted])
def test_int_tensor_raises(fn):
    x = (_images() * 255).to(torch.uint8)
    with pytest.raises(ValueError, match="float"):
        fn(x)
    with pytest.raises(ValueError):
        fn(torch.ones(5))  # not a batch
