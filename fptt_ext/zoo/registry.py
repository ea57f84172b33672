"""A timm-style registry of the papers' networks, with model cards and offline checkpoints.

Each entry is a constructor registered with :func:`register_model` plus a card:
task, dataset, encoding, T, the paper's accuracy and the dataset it was measured on
(``paper_dataset``: not always the card's ``dataset``, so a comparison says what it
compares), ours, the command that trains it, and, where one is published, the checkpoint
file in ``zoo/`` with its SHA-256.
Checkpoints are safetensors (no pickled code); loading checks the hash and the
parameter names and shapes before touching the model.

Example:
    >>> "ostl_rmnist" in list_models()
    True
    >>> model_card("ostl_rmnist")["dataset"]
    'fashion-mnist'
    >>> import torch
    >>> create_model("ostl_rmnist")(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

__all__ = [
    "PACKAGED_ZOO",
    "CheckpointError",
    "create_model",
    "list_models",
    "load_pretrained",
    "model_card",
    "model_constructor",
    "register_model",
    "zoo_dir",
]

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict]] = {}
CARD_FIELDS = ("task", "dataset", "encoding", "T", "paper_test_accuracy", "paper_dataset", "test_accuracy",
               "train_command", "checkpoint", "sha256")


# optional: what the model is, its layers in the papers' notation, its parameter count, the
# training recipe that `fptt-ext train --model NAME` defaults to, the constructor arguments
# of the published checkpoint, and how it differs from the paper's network
EXTRA_FIELDS = ("description", "paper_metric", "architecture", "num_params", "recipe", "model_kwargs", "variant")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or made for another architecture.

    Example:
        >>> issubclass(CheckpointError, ValueError)
        True
    """


#: Where an installed package (a wheel) keeps the published checkpoints and cards: the
#: repository's ``zoo/`` folder ships as package data under this name (pyproject.toml).
PACKAGED_ZOO = Path(__file__).resolve().parent / "checkpoints"


def zoo_dir() -> Path:
    """Where checkpoints and cards live, in order: the ``FPTT_EXT_ZOO`` environment variable,
    the copy inside an installed package (:data:`PACKAGED_ZOO`), the repository's ``zoo/`` folder
    (a source checkout or an editable install).

    Example:
        >>> zoo_dir().name in ("zoo", "checkpoints")
        True
    """
    if os.environ.get("FPTT_EXT_ZOO"):
        return Path(os.environ["FPTT_EXT_ZOO"])
    if PACKAGED_ZOO.is_dir():
        return PACKAGED_ZOO
    return Path(__file__).resolve().parents[2] / "zoo"


def register_model(name: str, **card):
    """Decorator: register ``fn(**kwargs) -> nn.Module`` under ``name`` with its card.

    Example:
        >>> import torch
        >>> @register_model("tiny_demo", task="classification", dataset="mnist5k", encoding="rate", T=5)
        ... def tiny_demo(neuron="ltc", **kwargs):
        ...     from fptt_ext.zoo.ostl import OSTLNet
        ...     return OSTLNet(hidden=(8,), neuron=neuron, **kwargs)
        >>> "tiny_demo" in list_models(), create_model("tiny_demo", neuron="alif")(torch.rand(1, 784)).shape
        (True, torch.Size([1, 10]))
        >>> _ = _REGISTRY.pop("tiny_demo")               # (keep the registry as it was)
    """
    unknown = set(card) - set(CARD_FIELDS) - set(EXTRA_FIELDS)
    if unknown:
        raise ValueError(f"unknown card fields {sorted(unknown)}")
    if card.get("paper_test_accuracy") is not None and not card.get("paper_dataset"):
        raise ValueError(f"{name}: a paper_test_accuracy needs the paper_dataset it was measured on")

    def wrap(fn):
        _REGISTRY[name] = (fn, {"name": name, **{f: None for f in CARD_FIELDS}, **card})
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``.

    Example:
        >>> list_models("srnn_*mnist")
        ['srnn_psmnist', 'srnn_smnist']
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _entry(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_constructor(name: str) -> Callable[..., nn.Module]:
    """The registered constructor of ``name`` (its signature lists the model's options).

    Example:
        >>> import inspect
        >>> list(inspect.signature(model_constructor("ostl_rmnist")).parameters)[:4]
        ['neuron', 'backend', 'n_in', 'hidden']
    """
    return _entry(name)[0]


def model_card(name: str) -> dict:
    """The card of ``name``, merged with ``zoo/<name>.json`` when a checkpoint is published.

    Example:
        >>> card = model_card("ostl_rmnist")
        >>> card["task"], card["encoding"], card["T"]
        ('classification', 'rate', 20)
    """
    card = dict(_entry(name)[1])
    path = zoo_dir() / f"{name}.json"
    if path.is_file():
        card.update(json.loads(path.read_text()))
    return card


def create_model(name: str, pretrained: bool = False, neuron: str | None = None, **kwargs) -> nn.Module:
    """Build ``name`` with the spiking ``neuron`` (``ltc``, ``ltc-minus``, ``alif``, ``leaky``,
    ``plif``; default ``ltc``); ``pretrained=True`` loads its published checkpoint (offline,
    hash checked), building the model with the checkpoint's constructor arguments (the card's
    ``model_kwargs``, its ``neuron`` included) unless given here.

    Example:
        >>> import torch
        >>> net = create_model("srnn_addtask", neuron="alif", hidden=16)
        >>> net(torch.rand(3, 2)).shape, net.zoo_card["name"]
        (torch.Size([3, 1]), 'srnn_addtask')
    """
    fn, _ = _entry(name)
    if pretrained:
        kwargs = {**(model_card(name).get("model_kwargs") or {}), **kwargs}
        neuron = neuron or kwargs.pop("neuron", None)
        kwargs.pop("neuron", None)
    model = fn(neuron=neuron or "ltc", **kwargs)
    if pretrained:
        load_pretrained(model, name)
    model.zoo_card = model_card(name)  # like timm's pretrained_cfg: what evaluate() reads
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pretrained(model: nn.Module, name: str) -> nn.Module:
    """Load ``zoo/<name>.safetensors`` into ``model`` after checking its SHA-256 and keys.

    Example:
        >>> model = create_model("srnn_smnist", hidden=8)
        >>> try:                                         # a card without a published checkpoint
        ...     load_pretrained(model, "srnn_smnist")
        ... except CheckpointError as err:
        ...     print(str(err)[:40])
        srnn_smnist has no published checkpoint 
    """
    from safetensors.torch import load_file

    card = model_card(name)
    if not card.get("checkpoint"):
        raise CheckpointError(f"{name} has no published checkpoint yet; train one with: {card['train_command']}")
    path = zoo_dir() / card["checkpoint"]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} for {name} is missing; expected it next to {name}.json "
                              f"(set FPTT_EXT_ZOO to the folder that holds it)")
    digest = _sha256(path)
    if digest != card["sha256"]:
        raise CheckpointError(f"checkpoint {path} has SHA-256 {digest}, but the card says {card['sha256']}: "
                              "the file is corrupted or was replaced; restore it from the repository")
    state = load_file(str(path))
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not _config_buffer(k))
    unexpected = sorted(k for k in set(state) - set(own) if not _config_buffer(k))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"checkpoint {path} does not match this {name} architecture: missing keys "
                              f"{missing}, unexpected keys {unexpected}, different shapes {shapes}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model


# snnTorch keeps fixed settings (threshold, reset mode) as buffers; SpikingJelly keeps them as
# attributes. They are not learned, so a checkpoint loads into either backend without them.
_CONFIG_BUFFERS = ("threshold", "graded_spikes_factor", "reset_mechanism_val")


def _config_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _CONFIG_BUFFERS
