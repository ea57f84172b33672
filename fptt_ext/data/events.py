"""Event-camera datasets: DVS-Gesture and CIFAR10-DVS as event frames, read by ``tonic``.

Each item is ``(frames [T, 2, H, W] float32, label int)``: the events of one
recording are split into ``T`` equal time bins and counted per polarity and
pixel (``tonic.transforms.ToFrame``), so with ``pool=1`` a sample's frames sum
to its number of events. With ``pool=4`` every frame is 4x4 average-pooled
(``torch.nn.functional.avg_pool2d``) to 32x32 per channel: each output pixel
is the *mean* event count of its 16 input pixels (the papers' frames "averaged
to 32x32", docs/zoo.md). tonic's ``Downsample(spatial_factor=0.25)`` was not used because it
maps four times fewer coordinates onto the same events, which gives the *sum*
of the 16 counts (16 times the average).

Time bins: tonic's ``ToFrame(n_time_bins=T)`` uses bins of ``(t_last - t_first) // T``
with an open right end, so it always drops the last event (and all of them
when a recording is shorter than ``T`` time units). Here the bins are
``ToFrame(time_window=W, start_time=t_first, end_time=t_first + T * W)`` with
``W = (t_last - t_first) // T + 1``: exactly ``T`` bins that hold every event.

Where the files are looked for, in order: the ``root=`` argument and the
``FPTT_EXT_DATA`` environment variable. Either may name tonic's ``save_to``
folder (the one holding ``DVSGesture/`` or ``CIFAR10DVS/``) or that dataset
folder itself. Nothing is ever downloaded: missing files raise
``DatasetNotFoundError`` with the expected layout.

* DVS-Gesture (tonic's preprocessed release, 1,077 train / 264 test recordings,
  11 classes): ``DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy`` ... and
  ``DVSGesture/ibmGestureTest/...``; each ``<label>.npy`` is an integer array
  ``[N, 4]`` of columns x, y, polarity, t (milliseconds).
* CIFAR10-DVS (tonic's AEDAT4 release, 10 x 1,000 recordings):
  ``CIFAR10DVS/<class>/<name>.aedat4`` with ``<class>`` one of airplane,
  automobile, ..., truck. Reading AEDAT4 needs the ``aedat`` package
  (``pip install aedat``). The dataset has no official split; ``cifar10_dvs``
  sorts each class's files by name (numbers in names compared as numbers) and
  puts the first 90% of every class in ``"train"``, the last 10% in ``"test"``.

Example (no data needed):
    >>> split_per_class([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "test")
    [2, 12]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions  # tonic's DVSGesture uses np.lib.recfunctions, which numpy 2 loads lazily
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .images import DatasetNotFoundError

__all__ = [
    "CIFAR10_DVS_CLASSES",
    "DVS_GESTURE_CLASSES",
    "EVENT_DATASETS",
    "EVENT_ENCODINGS",
    "EqualTimeFrames",
    "EventFrames",
    "cifar10_dvs",
    "dvs_gesture",
    "event_split",
    "split_per_class",
]

SENSOR_SIZE = (128, 128, 2)  # tonic's (W, H, P) for both datasets
DVS_GESTURE_CLASSES = ("hand clapping", "right hand wave", "left hand wave", "right arm cw", "right arm ccw",
                       "left arm cw", "left arm ccw", "arm roll", "air drums", "air guitar", "other gestures")
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_GESTURE_HOW = (
    "download DVS-Gesture on a machine with internet, either tonic's preprocessed archives ibmGestureTrain.tar.gz "
    "/ ibmGestureTest.tar.gz (figshare) or the original from its official site (IBM Research, 'DvsGesture'; its "
    "AEDAT 3.1 files must then be cut per gesture into tonic's layout), and place them at {path}, so that "
    "{path}/ibmGestureTrain/user01_fluorescent/0.npy exists; then pass root= (the folder holding DVSGesture/) "
    "or set FPTT_EXT_DATA"
)
_CIFAR_HOW = (
    "download CIFAR10-DVS on a machine with internet (tonic's CIFAR10DVS.zip from figshare, whose ten class "
    "zips hold .aedat4 files), extract it at {path}, so that {path}/airplane/<name>.aedat4 ... "
    "{path}/truck/<name>.aedat4 exist; then pass root= (the folder holding CIFAR10DVS/) or set FPTT_EXT_DATA"
)


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return int(T)


def _check_pool(pool) -> int:
    if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or pool < 1 or 128 % pool:
        raise ValueError(f"pool must be a positive int dividing 128 (1, 2, 4, ...), got {pool!r}")
    return int(pool)


def _natural_key(path: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(path))]


class EqualTimeFrames:
    """Event counts in ``T`` equal time bins that together hold every event: ``[T, P, H, W]`` int16.

    A picklable transform for tonic datasets (see the module docstring for why not ``n_time_bins``).

    >>> ev = np.zeros(3, dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    >>> ev["x"], ev["t"] = [0, 1, 1], [0, 5, 9]
    >>> f = EqualTimeFrames((2, 1, 2), T=2)(ev)
    >>> f.shape, int(f.sum()), f[:, 0, 0].tolist()
    ((2, 2, 1, 2), 3, [[1, 0], [0, 2]])
    """

    def __init__(self, sensor_size, T: int):
        self.sensor_size = tuple(sensor_size)
        self.T = _check_T(T)

    def __call__(self, events):
        from tonic.transforms import ToFrame

        W, H, P = self.sensor_size
        if len(events) == 0:
            return np.zeros((self.T, P, H, W), dtype=np.int16)
        t = events["t"]
        if np.any(t[1:] < t[:-1]):
            events = events[np.argsort(t, kind="stable")]
            t = events["t"]
        t0 = int(t[0])
        window = (int(t[-1]) - t0) // self.T + 1
        return ToFrame(self.sensor_size, time_window=window, start_time=t0, end_time=t0 + self.T * window)(events)

    def __repr__(self):
        return f"EqualTimeFrames(sensor_size={self.sensor_size}, T={self.T})"


class EventFrames(Dataset):
    """``(frames [T, 2, 128 // pool, 128 // pool] float32, label int)`` items of a tonic dataset.

    ``indices`` selects recordings (in the order of ``files``); ``tonic_dataset``
    is the underlying tonic object (its ``transform`` makes the frames).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> root = pathlib.Path(tempfile.mkdtemp())                                  # a one-recording DVS-Gesture
        >>> rec = root / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
        >>> rec.mkdir(parents=True)
        >>> np.save(rec / "3.npy", np.array([[10, 20, 1, 0], [11, 20, 0, 500], [12, 21, 1, 999]]))  # x, y, p, t
        >>> ds = dvs_gesture("train", root=root, T=4, pool=4)                  # an EventFrames
        >>> ds, ds[0][0].shape, ds.targets
        (EventFrames(DVSGesture, n=1, T=4, pool=4), torch.Size([4, 2, 32, 32]), [3])
    """

    def __init__(self, tonic_dataset, T: int, pool: int = 1, indices=None):
        self.tonic_dataset = tonic_dataset
        self.T = _check_T(T)
        self.pool = _check_pool(pool)
        n = len(tonic_dataset.data)
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]

    @property
    def files(self) -> list[str]:
        return [self.tonic_dataset.data[i] for i in self.indices]

    @property
    def targets(self) -> list[int]:
        return [int(self.tonic_dataset.targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        events_frames, label = self.tonic_dataset[self.indices[index]]
        frames = torch.from_numpy(np.ascontiguousarray(events_frames, dtype=np.float32))
        if self.pool > 1:
            frames = F.avg_pool2d(frames, self.pool)
        return frames, int(label)

    def __repr__(self):
        name = type(self.tonic_dataset).__name__.lstrip("_")
        return f"EventFrames({name}, n={len(self)}, T={self.T}, pool={self.pool})"


_OFFLINE: dict = {}


def _offline_class(name: str):
    """tonic's dataset class ``name`` that never downloads.

    tonic downloads unless the archive itself is present next to at least 100
    (DVS-Gesture) or 1,000 (CIFAR10-DVS) files; the callers check the files
    themselves, so ``_check_exists`` is always true and ``download`` raises.
    The class keeps tonic's ``__name__`` (tonic reads files under
    ``save_to/<class name>``); its ``__qualname__`` lets pickle find it here.
    """
    if name not in _OFFLINE:
        import tonic.datasets

        how = {"DVSGesture": _GESTURE_HOW, "CIFAR10DVS": _CIFAR_HOW}[name]

        def download(self):
            raise DatasetNotFoundError(f"{name} not found. To get it: " + how.format(path=self.location_on_system))

        _OFFLINE[name] = type(name, (getattr(tonic.datasets, name),), {
            "_check_exists": lambda self: True, "download": download,
            "__module__": __name__, "__qualname__": f"_Offline{name}"})
    return _OFFLINE[name]


def __getattr__(attr: str):  # the lazily made classes, for pickle (DataLoader workers started by spawn)
    if attr in ("_OfflineDVSGesture", "_OfflineCIFAR10DVS"):
        return _offline_class(attr[len("_Offline"):])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _save_to(folder_name: str, root, has_data, how: str) -> Path:
    """tonic's ``save_to`` (parent of ``folder_name``) among the candidates, else DatasetNotFoundError."""
    candidates = []
    if root is not None:
        candidates.append(Path(root).expanduser())
    if os.environ.get("FPTT_EXT_DATA"):
        candidates.append(Path(os.environ["FPTT_EXT_DATA"]).expanduser())
    if not candidates:
        raise DatasetNotFoundError(
            f"{folder_name}: no folder given; pass root= or set FPTT_EXT_DATA. To get the data: "
            + how.format(path=f"<root>/{folder_name}")
        )
    tried = []
    for c in candidates:
        for save_to in (c, c.parent) if c.name == folder_name else (c,):
            location = save_to / folder_name
            tried.append(str(location))
            if has_data(location):
                return save_to
    raise DatasetNotFoundError(
        f"{folder_name} not found; looked in: {', '.join(tried)}. To get it: "
        + how.format(path=f"{candidates[0]}/{folder_name}")
    )


def dvs_gesture(split: str = "train", root=None, T: int = 20, pool: int = 1) -> EventFrames:
    """IBM DVS-Gesture (11 classes), through ``tonic.datasets.DVSGesture`` without download.

    Items ``(frames [T, 2, 128/pool, 128/pool] float32, label in 0..10)``; see the
    module docstring for the layout and binning. Recordings are ordered by
    path (user, lighting, label), whatever the file system's order.

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> root = pathlib.Path(tempfile.mkdtemp())                                  # a one-recording DVS-Gesture
        >>> rec = root / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
        >>> rec.mkdir(parents=True)
        >>> np.save(rec / "3.npy", np.array([[10, 20, 1, 0], [11, 20, 0, 500], [12, 21, 1, 999]]))  # x, y, p, t
        >>> ds = dvs_gesture("train", root=root, T=4)
        >>> frames, label = ds[0]
        >>> frames.shape, label, DVS_GESTURE_CLASSES[label], frames.sum().item()     # every event counted once
        (torch.Size([4, 2, 128, 128]), 3, 'right arm cw', 3.0)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    T, pool = _check_T(T), _check_pool(pool)
    folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
    how = _GESTURE_HOW

    def has_data(location: Path) -> bool:
        return (location / folder).is_dir() and any((location / folder).glob("*/*.npy"))

    save_to = _save_to("DVSGesture", root, has_data, how.replace("{path}/ibmGestureTrain", "{path}/" + folder))

    try:
        frames = EqualTimeFrames(SENSOR_SIZE, T)
        ds = _offline_class("DVSGesture")(str(save_to), train=split == "train", transform=frames)
    except ValueError as err:  # a sub-folder not named user<NN>_<lighting>, a file not named <label>.npy
        raise DatasetNotFoundError(f"unexpected layout under {save_to / 'DVSGesture' / folder} ({err}); "
                                   f"expected user<NN>_<lighting>/<label>.npy") from err
    order = sorted(range(len(ds.data)), key=lambda i: _natural_key(ds.data[i]))
    for name in ("data", "targets", "users", "lighting"):
        values = getattr(ds, name)
        setattr(ds, name, [values[i] for i in order])
    bad = sorted({t for t in ds.targets if not 0 <= t < len(DVS_GESTURE_CLASSES)})
    if bad:
        raise DatasetNotFoundError(f"DVS-Gesture files in {save_to / 'DVSGesture' / folder} have labels {bad} "
                                   f"outside 0..10 (files must be named <label>.npy)")
    return EventFrames(ds, T, pool)


def split_per_class(targets, split: str, train_fraction=(9, 10)) -> list[int]:
    """Indices of a fixed stratified split: per class, in the given order, the first
    ``len * 9 // 10`` indices are ``"train"`` and the rest ``"test"``; ``"all"`` keeps all.

    >>> split_per_class([5] * 10 + [7] * 3, "test")
    [9, 12]
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if split == "all":
        return list(range(len(targets)))
    num, den = train_fraction
    per_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        per_class.setdefault(int(t), []).append(i)
    out = []
    for idx in per_class.values():
        n_train = len(idx) * num // den
        out += idx[:n_train] if split == "train" else idx[n_train:]
    return sorted(out)


def cifar10_dvs(root=None, T: int = 20, pool: int = 1, split: str = "train") -> EventFrames:
    """CIFAR10-DVS (10 classes), through ``tonic.datasets.CIFAR10DVS`` without download.

    Items ``(frames [T, 2, 128/pool, 128/pool] float32, label in 0..9)``.
    ``split``: ``"train"`` (first 90% of each class's files, sorted by name),
    ``"test"`` (the last 10%) or ``"all"``. Needs the ``aedat`` package.

    Example:
        >>> import tempfile
        >>> try:                                         # nothing is downloaded: the error says how to get the files
        ...     cifar10_dvs(root=tempfile.mkdtemp(), T=10)
        ... except DatasetNotFoundError as err:
        ...     print(str(err)[:22])
        CIFAR10DVS not found; 
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    T, pool = _check_T(T), _check_pool(pool)
    how = _CIFAR_HOW

    def has_data(location: Path) -> bool:
        return any(any((location / c).glob("*.aedat4")) for c in CIFAR10_DVS_CLASSES)

    save_to = _save_to("CIFAR10DVS", root, has_data, how)
    try:
        import aedat  # noqa: F401  (tonic.io.read_aedat4 imports it per sample)
    except ImportError as err:
        raise ImportError("reading CIFAR10-DVS's .aedat4 files needs the 'aedat' package: pip install aedat") from err

    try:
        ds = _offline_class("CIFAR10DVS")(str(save_to), transform=EqualTimeFrames(SENSOR_SIZE, T))
    except KeyError as err:
        raise DatasetNotFoundError(f"an .aedat4 file under {save_to / 'CIFAR10DVS'} is in a folder {err} that is "
                                   f"not a class name; expected <class>/<name>.aedat4 with <class> in "
                                   f"{', '.join(CIFAR10_DVS_CLASSES)}") from err
    order = sorted(range(len(ds.data)), key=lambda i: (ds.targets[i], _natural_key(os.path.basename(ds.data[i]))))
    ds.data = [ds.data[i] for i in order]
    ds.targets = [ds.targets[i] for i in order]
    return EventFrames(ds, T, pool, indices=split_per_class(ds.targets, split))


EVENT_ENCODINGS = {"frames": 1, "frames32": 4}  # encoding name -> average-pool factor (128x128 or 32x32 frames)


def event_split(name: str, split: str, root=None, T: int = 20, encoding: str = "frames") -> EventFrames:
    """The ``split`` of event dataset ``name`` (a key of :data:`EVENT_DATASETS`) as ``T``
    frames per recording, ``encoding`` ``"frames"`` (2x128x128) or ``"frames32"`` (2x32x32).

    >>> event_split("mnist", "test")
    Traceback (most recent call last):
    ...
    ValueError: unknown event dataset 'mnist'; choose one of ['cifar10-dvs', 'dvs-gesture']
    """
    if name not in EVENT_DATASETS:
        raise ValueError(f"unknown event dataset {name!r}; choose one of {sorted(EVENT_DATASETS)}")
    if encoding not in EVENT_ENCODINGS:
        raise ValueError(f"unknown event encoding {encoding!r}; choose one of {sorted(EVENT_ENCODINGS)}")
    return EVENT_DATASETS[name](split=split, root=root, T=T, pool=EVENT_ENCODINGS[encoding])


EVENT_DATASETS = {"dvs-gesture": dvs_gesture, "cifar10-dvs": cifar10_dvs}
