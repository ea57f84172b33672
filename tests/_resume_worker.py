"""Helper for tests/test_loop.py: checkpoint mid-epoch, resume in a new process.

``python _resume_worker.py CHECKPOINT OUT`` loads ``CHECKPOINT`` (written by
:func:`save`), trains the remaining batches of the epoch and writes
:func:`final` to ``OUT``. :func:`run` trains the same epoch without interruption.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

T, B, N_IN, HIDDEN, CLASSES = 5, 6, 3, 10, 3
BATCHES, SPLIT = 4, 2  # checkpoint after SPLIT of BATCHES batches


def make(seed: int = 0):
    import fptt_ext
    from fptt_ext.fptt import SequenceTrainer

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.Dropout(0.2), fptt_ext.LTC(size=HIDDEN, init_hidden=True),
                          nn.Linear(HIDDEN, CLASSES)).double()
    trainer = SequenceTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), method="fptt",
                              loss="classification", num_classes=CLASSES)
    return model, trainer


def batch():
    """A batch drawn from the global RNG, so the RNG state must survive the checkpoint."""
    y = torch.randint(0, CLASSES, (B,))
    x = torch.randn(T, B, N_IN, dtype=torch.float64) + y.to(torch.float64).view(1, B, 1)
    return x, y


def train(trainer, n: int) -> list[float]:
    losses = []
    for _ in range(n):
        losses.append(trainer.train_batch(*batch()).loss)
    return losses


def final(model, trainer, losses) -> dict:
    return {"model": {k: v.clone() for k, v in model.state_dict().items()},
            "fptt": {i: {k: v.clone() for k, v in s.items()} for i, s in trainer.optimizer.state_dict()["state"].items()},
            "Q": trainer.loss_fn.Q.clone(), "losses": losses}


def run() -> dict:
    model, trainer = make()
    return final(model, trainer, train(trainer, BATCHES))


def save(path) -> list[float]:
    model, trainer = make()
    losses = train(trainer, SPLIT)
    torch.save({"model": model.state_dict(), "trainer": trainer.state_dict(), "rng": torch.get_rng_state()}, path)
    return losses


def resume(path) -> dict:
    model, trainer = make(seed=123)  # different init: everything must come from the checkpoint
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    trainer.load_state_dict(ckpt["trainer"])
    torch.set_rng_state(ckpt["rng"])
    return final(model, trainer, train(trainer, BATCHES - SPLIT))


if __name__ == "__main__":
    torch.save(resume(sys.argv[1]), sys.argv[2])
