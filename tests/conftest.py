"""Shared test settings and fixtures."""

import os
from pathlib import Path

import pytest
import torch

FASHION_MNIST_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz")


def _fashion_mnist_folder() -> Path | None:
    """The folder holding the four Fashion-MNIST ``.gz`` files where fptt_ext looks for them
    (``FPTT_EXT_DATA``, itself or its ``fashion-mnist/``, then Debian's package), or None.
    Read when the tests start: some tests hide ``FPTT_EXT_DATA`` from the code they test."""
    env = os.environ.get("FPTT_EXT_DATA")
    candidates = [Path(env) / "fashion-mnist", Path(env)] if env else []
    for folder in [*candidates, Path("/usr/share/datasets/fashion-mnist")]:
        if all((folder / name).is_file() for name in FASHION_MNIST_GZ):
            return folder
    return None


FASHION_MNIST_FOLDER = _fashion_mnist_folder()


@pytest.fixture(scope="session")
def fashion_mnist_gz() -> Path:
    """The Fashion-MNIST ``.gz`` folder. Without it the test is skipped, unless the data is
    required (``FPTT_EXT_REQUIRE_DATA=1``, set by scripts/test.sh, whose setup installs it, and so
    in CI): then it fails, so that a missing dataset cannot pass for a green run."""
    if FASHION_MNIST_FOLDER is None:
        msg = ("Fashion-MNIST not found (install the Debian package dataset-fashion-mnist, or set FPTT_EXT_DATA "
               "to a folder with its four IDX .gz files)")
        if os.environ.get("FPTT_EXT_REQUIRE_DATA") == "1":
            pytest.fail(msg + "; FPTT_EXT_REQUIRE_DATA=1 says it must be there", pytrace=False)
        pytest.skip(msg)
    return FASHION_MNIST_FOLDER


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The test models are tiny: one intra-op thread is faster, and far steadier when other
    processes share the machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
