"""Evaluate a zoo classifier on its card's dataset and encoding, in one line.

Example:
    >>> r = evaluate("ostl_rmnist", pretrained=False, limit=20, dataset="mnist5k")
    >>> r["n"], 0.0 <= r["test_accuracy"] <= 100.0
    (20, True)
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.encodings import encode
from ..data.images import image_split
from ..fptt.loop import is_multi_step, run_sequence
from ..fptt.state import StatefulModules
from .registry import create_model, model_card

__all__ = ["accuracy", "evaluate"]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, encoding: str, T: int, *,
             batch_size: int = 500, seed: int = 0) -> float:
    """Test accuracy in percent from the prediction at the last time step.

    Stochastic encodings (Poisson rate coding) draw from ``seed`` in a forked RNG, so
    the same weights always score the same and the caller's RNG stream is untouched.

    Example:
        >>> from fptt_ext.data.images import image_split
        >>> x, y = image_split("mnist5k", "test", limit=10)
        >>> 0.0 <= accuracy(create_model("ostl_rmnist", hidden=(16,)), x, y, encoding="rate", T=5) <= 100.0
        True
    """
    states, multi_step = StatefulModules(model), is_multi_step(model)
    was_training = model.training
    model.eval()
    correct = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, len(y), batch_size):
            states.reset()
            out, _ = run_sequence(model, encode(encoding, x[i:i + batch_size], T), multi_step=multi_step)
            correct += (out[-1].argmax(-1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(len(y), 1)


def evaluate(name_or_model, pretrained: bool = True, limit: int | None = None, *, card: dict | None = None,
             dataset: str | None = None, **kwargs) -> dict:
    """``{"test_accuracy": percent, "n": samples}`` of a zoo model on its card's test set.

    ``name_or_model``: a registered name (built with ``create_model(name, pretrained, **kwargs)``)
    or a model made by :func:`create_model` (its card is ``model.zoo_card``), or any model
    with ``card=``. ``dataset`` overrides the card's dataset (e.g. ``"mnist5k"``).

    Example:
        >>> model = create_model("ostl_rmnist", hidden=(16,))
        >>> evaluate(model, limit=10, dataset="mnist5k")["n"]
        10
    """
    if isinstance(name_or_model, str):
        model = create_model(name_or_model, pretrained=pretrained, **kwargs)
        card = model_card(name_or_model)
    else:
        model, card = name_or_model, card or getattr(name_or_model, "zoo_card", None)
        if card is None:
            raise ValueError("pass card= (a model card dict) for a model not made by create_model")
    if card["task"] != "classification":
        raise ValueError(f"{card['name']} is a {card['task']} model; evaluate() scores image classifiers")
    x, y = image_split(dataset or card["dataset"], "test", limit)
    return {"test_accuracy": accuracy(model, x, y, card["encoding"], card["T"]), "n": len(y)}
