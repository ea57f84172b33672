"""Evaluate a zoo classifier on its card's dataset and encoding, in one line.

``evaluate("ostl_rmnist")`` scores the published checkpoint on the card's full test set (what
its card reports). A network whose readout always says "7" gets exactly the share of 7s right:

Example:
    >>> import torch
    >>> model = create_model("ostl_rmnist", hidden=(16,))
    >>> readout = model.layers[2]                    # Linear(16, 10) before the LI readout
    >>> with torch.no_grad():
    ...     _ = readout.weight.zero_(), readout.bias.zero_(), readout.bias[7].fill_(5.0)
    >>> evaluate(model, limit=20, dataset="mnist5k")  # the first 20 test digits hold two 7s
    {'test_accuracy': 10.0, 'n': 20}
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.addtask import AddTask
from ..data.detection import detection_data
from ..data.encodings import encode
from ..data.events import EVENT_DATASETS, event_split
from ..data.images import image_split
from ..detection.evaluate import evaluate_detector
from ..fptt.loop import is_multi_step, run_sequence
from ..fptt.state import StatefulModules
from .registry import create_model, model_card

__all__ = ["accuracy", "addtask_mse", "detection_map50", "evaluate", "loader_accuracy"]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, encoding: str, T: int, *,
             batch_size: int = 500, seed: int = 0) -> float:
    """Test accuracy in percent from the prediction at the last time step.

    Stochastic encodings (Poisson rate coding) draw from ``seed`` in a forked RNG, so
    the same weights always score the same and the caller's RNG stream is untouched.

    Example:
        >>> import torch
        >>> from fptt_ext.data.images import image_split
        >>> x, y = image_split("mnist5k", "test", limit=10)
        >>> y.tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> model = create_model("ostl_rmnist", hidden=(16,))
        >>> with torch.no_grad():                    # a readout that always says "3": 1 of 10 right
        ...     _ = model.layers[2].weight.zero_(), model.layers[2].bias.zero_(), model.layers[2].bias[3].fill_(5.0)
        >>> accuracy(model, x, y, encoding="rate", T=5)
        10.0
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
             dataset: str | None = None, root=None, **kwargs) -> dict:
    """``{"test_accuracy": percent, "n": samples}`` of a zoo model on its card's test set
    (``{"test_mse", "n"}`` for the Add-task model, on ``limit`` or 10 batches of 100).

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
    if card["task"] == "regression" and card["dataset"] == "addtask":
        return addtask_mse(model, card["T"], batches=limit or 10)
    if card["task"] == "detection":
        return detection_map50(model, card, limit)
    if card["task"] != "classification":
        raise ValueError(f"{card['name']} is a {card['task']} model; evaluate() scores classifiers, detectors "
                         "and the Add-task")
    if (dataset or card["dataset"]) in EVENT_DATASETS:
        test = event_split(dataset or card["dataset"], "test", root, card["T"], card["encoding"])
        if limit:
            test = torch.utils.data.Subset(test, range(min(limit, len(test))))
        return {"test_accuracy": loader_accuracy(model, torch.utils.data.DataLoader(test, batch_size=16)),
                "n": len(test)}
    x, y = image_split(dataset or card["dataset"], "test", limit)
    return {"test_accuracy": accuracy(model, x, y, card["encoding"], card["T"]), "n": len(y)}


@torch.no_grad()
def loader_accuracy(model: nn.Module, loader) -> float:
    """Accuracy in percent at the last step over ``(frames [B, T, ...], label)`` batches.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> class SaysThree(torch.nn.Module):           # scores class 3 highest at every step
    ...     def forward(self, x):
    ...         return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 11).float()
    >>> data = TensorDataset(torch.rand(4, 3, 2, 32, 32), torch.tensor([3, 0, 3, 5]))
    >>> loader_accuracy(SaysThree(), DataLoader(data, batch_size=2))
    50.0
    """
    states, multi_step, was_training = StatefulModules(model), is_multi_step(model), model.training
    model.eval()
    correct = total = 0
    for frames, y in loader:
        states.reset()
        out, _ = run_sequence(model, frames.transpose(0, 1), multi_step=multi_step)
        correct += (out[-1].argmax(-1) == y).sum().item()
        total += len(y)
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


@torch.no_grad()
def addtask_mse(model: nn.Module, T: int, *, batches: int = 10, batch_size: int = 100, seed: int = 12345) -> dict:
    """``{"test_mse", "n"}``: final-step MSE on ``batches`` fresh Add-task batches drawn from
    ``seed`` (a stream the training runs, seeded from 0 upwards, do not use).

    A model that always answers 0 scores the mean square of the targets:

    >>> class Zero(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.new_zeros(x.shape[0], 1)
    >>> r = addtask_mse(Zero(), T=6, batches=2, batch_size=3)
    >>> y = torch.cat([AddTask(6, 3, seed=12345).batch(i)[1] for i in range(2)])
    >>> r["n"], abs(r["test_mse"] - (y ** 2).mean().item()) < 1e-7
    (6, True)
    """
    states, was_training = StatefulModules(model), model.training
    model.eval()
    errors = []
    for i in range(batches):
        x, y = AddTask(T, batch_size, seed=seed).batch(i)
        states.reset()
        out, _ = run_sequence(model, x, multi_step=is_multi_step(model))
        errors.append(((out[-1].reshape(y.shape) - y) ** 2).mean().item())
    model.train(was_training)
    return {"test_mse": sum(errors) / len(errors), "n": batches * batch_size}


def detection_map50(model: nn.Module, card: dict, limit: int | None = None) -> dict:
    """``{"map50": percent after the last read, "map50_per_read": [...], "n": images}`` of a detector
    on the test set its checkpoint was trained for (the card's ``trained_with``: dataset, image
    size, number of test images, seed; the registration's ``T``).

    Only the synthetic shapes set is drawn here; VOC needs its folder
    (:func:`fptt_ext.experiments.detect.evaluate_detector` with ``detection_data("voc", ...)``).

    Example:
        >>> from fptt_ext.zoo.spyv4 import SPYv4
        >>> card = {"T": 1, "trained_with": {"dataset": "synthetic", "image_size": 32, "n_test": 2, "seed": 0}}
        >>> detection_map50(SPYv4(num_classes=5, width=0.125), card)["n"]
        2
    """
    run = card.get("trained_with") or {}
    if run.get("dataset", "synthetic") != "synthetic":
        raise ValueError(f"{card.get('name', 'this detector')} was trained on {run['dataset']!r}; evaluate() scores "
                         "detectors on the synthetic shapes set only (VOC needs its folder: use "
                         "fptt_ext.experiments.detect.evaluate_detector)")
    n = run.get("n_test", 500) if limit is None else min(limit, run.get("n_test", 500))
    test, classes = detection_data("synthetic", "test", image_size=run.get("image_size", 128), n=n,
                                   seed=run.get("seed", 0))
    r = evaluate_detector(model, test, run.get("T", card["T"]), class_names=classes)
    return {"map50": round(100 * r["map50"], 2), "map50_per_read": [round(100 * m, 2) for m in r["map50_per_read"]],
            "n": r["n"]}
