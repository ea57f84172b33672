"""A wheel built from this repository works where there is no source tree: the zoo's
checkpoints and cards ship inside it (pyproject.toml maps zoo/ to fptt_ext/zoo/checkpoints/).

The wheel is built with ``pip wheel --no-deps`` from a copy of the sources (so no build/ or
egg-info lands in the working tree) and installed with ``--no-deps`` into a fresh virtual
environment. That environment sees this one's site-packages through a ``.pth`` file, added
after the install, so torch and the other dependencies are not downloaded again, while
fptt_ext itself can only come from the wheel (a path listed in a ``.pth`` file is put on
``sys.path`` as it is: the editable install's own ``.pth`` hook in there is not run).
About 20 s, most of it pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = "fptt_ext/zoo/checkpoints/"


def _run(args, **kw):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kw)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("fptt_ext", "zoo"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check", "-w", out, src])
    (whl,) = out.glob("fptt_ext-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv_python(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet",
          "--disable-pip-version-check", wheel])
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (purelib / "fptt_ext_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FPTT_EXT_ZOO")}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_wheel_holds_every_module_and_the_zoo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "fptt_ext").rglob("*.py")}
    assert modules <= names, f"not in the wheel (add the package to pyproject.toml): {sorted(modules - names)}"
    cards = sorted((ROOT / "zoo").glob("*.json"))
    assert cards
    for card_path in cards:
        card = json.loads(card_path.read_text())
        packaged = zipfile.ZipFile(wheel).read(PACKAGED + card["checkpoint"])
        assert PACKAGED + card_path.name in names
        assert hashlib.sha256(packaged).hexdigest() == card["sha256"]


# What the installed copy is asked to do, from a folder with no source tree in it.
SCRIPT = """
import json, os, torch, fptt_ext
from fptt_ext.zoo import create_model, model_card, zoo_dir
net = create_model("ostl_rmnist", pretrained=True).eval()
x = (torch.rand(5, 3, 784, generator=torch.Generator().manual_seed(0)) < 0.3).float()
with torch.no_grad():
    out = torch.stack([net(x_t) for x_t in x])
packaged = str(zoo_dir())
os.environ["FPTT_EXT_ZOO"] = os.getcwd()              # FPTT_EXT_ZOO wins over the packaged zoo
print(json.dumps({"package": fptt_ext.__file__, "zoo": packaged, "out": out.tolist(), "env_zoo": str(zoo_dir()),
                  "env_card_checkpoint": model_card("ostl_rmnist").get("checkpoint")}))
"""


def test_installed_wheel_loads_the_pretrained_zoo_from_another_folder(venv_python, tmp_path):
    from fptt_ext.zoo import create_model

    got = json.loads(_run([venv_python, "-c", SCRIPT], cwd=tmp_path, env=_clean_env()))
    site = Path(venv_python).parents[1]
    assert Path(got["package"]).is_relative_to(site), got["package"]  # the wheel's copy, not this tree
    assert Path(got["zoo"]) == Path(got["package"]).parent / "zoo" / "checkpoints"
    assert (got["env_zoo"], got["env_card_checkpoint"]) == (str(tmp_path), None)  # an empty FPTT_EXT_ZOO folder
    # the same weights as the source tree's checkpoint: the same outputs
    net = create_model("ostl_rmnist", pretrained=True).eval()
    x = (torch.rand(5, 3, 784, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    with torch.no_grad():
        expected = torch.stack([net(x_t) for x_t in x])
    assert torch.equal(torch.tensor(got["out"]), expected)


def test_installed_command_line_finds_the_zoo(venv_python, tmp_path, capsys, fashion_mnist_gz):
    from fptt_ext.cli import main

    command = Path(venv_python).parent / "fptt-ext"
    listing = _run([command, "zoo", "list"], cwd=tmp_path, env=_clean_env())
    assert any(line.split()[0] == "ostl_rmnist" and line.endswith(" checkpoint") for line in listing.splitlines())
    env = {**_clean_env(), "FPTT_EXT_DATA": str(fashion_mnist_gz), "FPTT_EXT_CACHE": str(tmp_path / "cache")}
    installed = _run([command, "eval", "ostl_rmnist", "--limit", "200"], cwd=tmp_path, env=env)
    assert main(["eval", "ostl_rmnist", "--limit", "200"]) == 0  # the same score from this source tree
    assert installed == capsys.readouterr().out and installed.startswith("test accuracy: ")
