"""N-MNIST-style event recordings of real MNIST digits, made by a simulated camera saccade.

N-MNIST (Orchard et al. 2015) is the MNIST digits filmed by an event camera that moves in
three saccades along a triangle, 34 x 34 pixels, two polarities, about 300 ms per digit.
It is not on these machines, so snnTorch's tutorial 7 runs here on the same kind of data
made from the real digits of :func:`fptt_ext.data.images.mnist5k`: each digit is placed on
a 34 x 34 canvas and moved along the triangle (bilinear sub-pixel shifts); a pixel emits an
ON (OFF) event each time its log intensity has risen (fallen) by ``contrast`` since its last
event, as a DVS pixel does. A few isolated noise events per recording give tonic's
``Denoise`` something to remove.

Each item is ``(events, label)`` with ``events`` a structured array of tonic's layout
(fields ``x, y, t, p``, ``t`` in microseconds), so tonic's transforms and collation work
on it as on ``tonic.datasets.NMNIST``:

Example:
    >>> import tonic
    >>> ds = saccade_mnist("test", limit=2)
    >>> events, label = ds[0]
    >>> events.dtype.names, ds.sensor_size, label
    (('x', 'y', 't', 'p'), (34, 34, 2), 0)
    >>> to_frame = tonic.transforms.ToFrame(sensor_size=ds.sensor_size, n_time_bins=10)
    >>> to_frame(events).shape                                     # [T, polarity, H, W]
    (10, 2, 34, 34)
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .images import mnist5k

__all__ = ["SaccadeEvents", "saccade_mnist"]

SENSOR_SIZE = (34, 34, 2)  # tonic's (W, H, P), as tonic.datasets.NMNIST
DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
# The triangle of the three saccades, (dy, dx) in pixels; 3 + 28 + 3 = 34 keeps the digit on the canvas.
TRIANGLE = ((-3.0, -3.0), (3.0, 0.0), (-3.0, 3.0), (-3.0, -3.0))


def _path(steps_per_saccade: int) -> torch.Tensor:
    """``[3 * steps, 2]`` offsets (dy, dx) along the triangle, the start vertex excluded."""
    legs = []
    for (y0, x0), (y1, x1) in itertools.pairwise(TRIANGLE):
        f = torch.arange(1, steps_per_saccade + 1, dtype=torch.float32) / steps_per_saccade
        legs.append(torch.stack((y0 + f * (y1 - y0), x0 + f * (x1 - x0)), dim=1))
    return torch.cat(legs)


def _render(image: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The 28 x 28 ``image`` centred on a 34 x 34 canvas, shifted by each of ``offsets``: ``[K, 34, 34]``."""
    canvas = F.pad(image.reshape(1, 1, 28, 28), (3, 3, 3, 3))
    k = offsets.shape[0]
    theta = torch.zeros(k, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] units: a shift of d pixels is 2 d / 34; sampling at x - d moves the picture by +d
    theta[:, 0, 2] = -2.0 * offsets[:, 1] / 34.0
    theta[:, 1, 2] = -2.0 * offsets[:, 0] / 34.0
    grid = F.affine_grid(theta, (k, 1, 34, 34), align_corners=False)
    return F.grid_sample(canvas.expand(k, -1, -1, -1), grid, mode="bilinear", align_corners=False)[:, 0]


def dvs_events(frames: torch.Tensor, dt_us: int, contrast: float, eps: float = 0.1) -> np.ndarray:
    """Events of a DVS pixel array watching ``frames`` ``[K+1, H, W]`` (intensities in [0, 1]).

    A pixel fires one event per ``contrast`` of log-intensity change since its last event,
    ON (``p = 1``) for a rise and OFF (``p = 0``) for a fall; the events of step ``k`` are spread
    evenly over ``((k-1) dt, k dt]``.

    Example:
        >>> import torch
        >>> frames = torch.zeros(3, 1, 2); frames[1:, 0, 1] = 1.0     # one pixel turns on at step 1
        >>> ev = dvs_events(frames, dt_us=1000, contrast=0.5)
        >>> ev["x"].tolist(), ev["p"].tolist(), ev["t"].tolist()      # log(1.1/0.1) = 2.4: four ON events
        ([1, 1, 1, 1], [1, 1, 1, 1], [250, 500, 750, 1000])
    """
    # In units of `contrast` and relative to the first frame, a pixel's reference level is an integer
    # m: a rise to z moves it up to floor(z), a fall down to ceil(z); each unit moved is one event.
    z = (np.log(frames.double().numpy() + eps) - np.log(frames[0].double().numpy() + eps)) / contrast
    level = np.zeros(z.shape, dtype=np.int64)
    for k in range(1, z.shape[0]):
        up, down = np.floor(z[k]).astype(np.int64), np.ceil(z[k]).astype(np.int64)
        level[k] = np.where(up > level[k - 1], up, np.where(down < level[k - 1], down, level[k - 1]))
    delta = np.diff(level, axis=0)
    k, y, x = np.nonzero(delta)
    counts = np.abs(delta[k, y, x])
    reps = np.repeat(np.arange(k.size), counts)
    j = np.arange(reps.size) - np.repeat(np.cumsum(counts) - counts, counts)  # index within a pixel's burst
    events = np.empty(reps.size, dtype=DTYPE)
    events["x"], events["y"], events["p"] = x[reps], y[reps], (delta[k, y, x] > 0)[reps]
    events["t"] = k[reps] * dt_us + ((j + 1) * dt_us) // counts[reps]
    return events[np.argsort(events["t"], kind="stable")]


class SaccadeEvents(Dataset):
    """Event recordings of ``images`` ``[N, 1, 28, 28]`` seen by a camera in three saccades.

    Args:
        images, labels: the digits (intensities in [0, 1]) and their classes.
        steps_per_saccade: simulation steps per saccade, ``dt_us`` microseconds each
            (50 x 2 ms: 100 ms per saccade, 300 ms per recording, as N-MNIST).
        contrast: log-intensity change per event.
        noise_events: isolated events at random pixels and times, per recording.
        transform: applied to the events (a tonic transform), as in tonic's datasets.
        seed: the noise of item ``i`` is drawn from ``seed + i``, so items are reproducible.

    Example:
        >>> import torch
        >>> ds = SaccadeEvents(torch.ones(1, 1, 28, 28) * 0.5, torch.tensor([3]), noise_events=0)
        >>> ev, y = ds[0]
        >>> y, int(ev["t"].max()) <= 300_000, set(ev["p"].tolist()) == {0, 1}
        (3, True, True)
    """

    sensor_size = SENSOR_SIZE
    dtype = DTYPE
    ordering = DTYPE.names

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, steps_per_saccade: int = 50,
                 dt_us: int = 2000, contrast: float = 0.5, noise_events: int = 50, transform=None, seed: int = 0):
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape [N, 1, 28, 28], got {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.offsets = torch.cat((torch.tensor([TRIANGLE[0]]), _path(steps_per_saccade)))
        self.dt_us, self.contrast, self.noise_events = int(dt_us), float(contrast), int(noise_events)
        self.transform, self.seed = transform, int(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        events = dvs_events(_render(self.images[i], self.offsets), self.dt_us, self.contrast)
        if self.noise_events:
            g = np.random.default_rng(self.seed + i)
            noise = np.empty(self.noise_events, dtype=DTYPE)
            noise["x"], noise["y"] = g.integers(0, 34, self.noise_events), g.integers(0, 34, self.noise_events)
            noise["t"] = g.integers(0, (len(self.offsets) - 1) * self.dt_us, self.noise_events)
            noise["p"] = g.integers(0, 2, self.noise_events)
            events = np.concatenate((events, noise))
            events = events[np.argsort(events["t"], kind="stable")]
        if self.transform is not None:
            events = self.transform(events)
        return events, int(self.labels[i])


def saccade_mnist(split: str = "train", limit: int | None = None, **kwargs) -> SaccadeEvents:
    """:class:`SaccadeEvents` of the real MNIST digits of :func:`~fptt_ext.data.images.mnist5k`
    (4,000 train / 1,000 test), the first ``limit`` of them if given.

    >>> len(saccade_mnist("test")), len(saccade_mnist("train", limit=5))
    (1000, 5)
    """
    x, y = mnist5k(split).tensors
    return SaccadeEvents(x[:limit], y[:limit], **kwargs)
