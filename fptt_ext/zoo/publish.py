"""Publish trained weights into the zoo: checkpoint, hash, and a card with the measured score.

:func:`publish` takes the weights of a training run (``model.safetensors`` of
``fptt-ext train``, or the model of an ``fptt-ext addtask`` checkpoint), checks they fit the
registered architecture, writes ``<zoo>/<name>.safetensors``, measures the model on the
card's full test set with :func:`fptt_ext.zoo.evaluate` (exactly what ``fptt-ext eval NAME``
runs), and writes ``<zoo>/<name>.json`` with the score, the SHA-256 and how it was trained.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> from fptt_ext.zoo import create_model
    >>> zoo, run = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> save_file(create_model("srnn_addtask", hidden=4).state_dict(), str(run / "model.safetensors"))
    >>> card = publish("srnn_addtask", run, zoo=zoo, model_kwargs={"hidden": 4}, limit=1)
    >>> sorted(p.name for p in zoo.iterdir()), len(card["sha256"])
    (['srnn_addtask.json', 'srnn_addtask.safetensors'], 64)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .evaluate import evaluate
from .registry import CheckpointError, _entry, _sha256, create_model, model_card, zoo_dir

__all__ = ["publish"]


def _run_weights(run: Path) -> tuple[dict, dict]:
    """``(state_dict, run config)`` from a run directory or a ``.safetensors`` file."""
    if run.is_file():
        return load_file(str(run)), {}
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    if (run / "model.safetensors").is_file():
        return load_file(str(run / "model.safetensors")), config
    if (run / "checkpoint.pt").is_file():  # fptt-ext addtask keeps its model in the checkpoint
        return torch.load(run / "checkpoint.pt", weights_only=True)["model"], config
    raise FileNotFoundError(f"{run} has neither model.safetensors nor checkpoint.pt; pass a training run directory")


def publish(name: str, run: str | os.PathLike, *, zoo: str | os.PathLike | None = None,
            model_kwargs: dict | None = None, train_command: str | None = None, limit: int | None = None,
            notes: str | None = None) -> dict:
    """Write ``name``'s checkpoint and card from the weights in ``run``; returns the card.

    ``model_kwargs``: constructor arguments the run used (default: the run's
    ``config.json`` ``model_kwargs``); ``limit``: evaluate on fewer samples (tests only;
    a published card should be measured on the full test set).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from safetensors.torch import save_file
        >>> zoo, run = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> save_file(create_model("srnn_addtask", hidden=4).state_dict(), str(run / "model.safetensors"))
        >>> try:                                     # the weights must fit the architecture of the card
        ...     publish("srnn_addtask", run, zoo=zoo, model_kwargs={"hidden": 8})
        ... except CheckpointError as err:
        ...     print(type(err).__name__, "are not a srnn_addtask built with {'hidden': 8}" in str(err))
        CheckpointError True
    """
    run = Path(run)
    state, config = _run_weights(run)
    kwargs = dict(model_kwargs if model_kwargs is not None else config.get("model_kwargs") or {})
    model = create_model(name, **kwargs)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"the weights in {run} are not a {name} built with {kwargs}: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, different shapes {shapes[:3]}")
    model.load_state_dict(state)
    out = Path(zoo) if zoo is not None else zoo_dir()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt), metadata={"model": name})
    registered = model_card(name)
    # a run at another T than the registration's (e.g. fewer steps per image on a CPU) is scored,
    # and later evaluated by `fptt-ext eval`, at the T it was trained with
    trained_T = config.get("T")
    if registered["task"] == "classification" and trained_T and trained_T != registered["T"]:
        registered = {**registered, "T": trained_T}
    trained_with = {k: v for k, v in config.items() if k != "model_kwargs"}
    registered = {**registered, "trained_with": trained_with}  # a detector is scored on its run's test set
    score = evaluate(model, card=registered, limit=limit)
    card = {"checkpoint": ckpt.name, "sha256": _sha256(ckpt), "model_kwargs": kwargs,
            "evaluated_with": f"fptt-ext eval {name}" + (f" --limit {limit}" if limit else ""),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in score.items() if k != "n"},
            # the registration's command, not that of the checkpoint this one replaces
            "test_n": score["n"], "train_command": train_command or _entry(name)[1]["train_command"],
            "trained_with": trained_with}
    if registered["T"] != _entry(name)[1]["T"]:
        card["T"] = registered["T"]
    if notes:
        card["notes"] = notes
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return {**registered, **card}
