"""Helper for tests/test_ddp.py: one rank of a 2-process CPU/gloo FPTT run.

Run as ``python _ddp_worker.py OUT_DIR`` with the usual torchrun variables
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) in the environment; rank r trains
on half r of :func:`data`, once per FPTT variant, and writes its weights and
FPTT state to ``OUT_DIR/rank{r}.pt``, together with the error the trainer
raises for a model wrapped with DDP's default buffer broadcasting. :func:`train` without a process group is
the single-process reference on the whole batch.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

T, B, N_IN, HIDDEN, CLASSES, BATCHES = 6, 8, 4, 12, 3, 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # size= builds the LTC gates eagerly, so every parameter exists before DDP wraps it.
    import fptt_ext

    return nn.Sequential(nn.Linear(N_IN, HIDDEN), fptt_ext.LTC(size=HIDDEN, init_hidden=True),
                         nn.Linear(HIDDEN, CLASSES)).double()


def data():
    g = torch.Generator().manual_seed(1)
    xs = [2.0 * torch.randn(T, B, N_IN, generator=g, dtype=torch.float64) for _ in range(BATCHES)]
    ys = [torch.randint(0, CLASSES, (T, B), generator=g) for _ in range(BATCHES)]
    return xs, ys


def fptt_state(trainer, model) -> dict:
    """W, W_bar and lam / grad_prev per parameter, by parameter name."""
    opt = trainer.optimizer
    out = {}
    for name, p in model.named_parameters():
        s = opt.state[p]
        out[name] = {"W": p.detach().clone(), **{k: v.detach().clone() for k, v in s.items()}}
    return out


def train(variant: str, rank: int = 0, world: int = 1) -> dict:
    """Train with FPTT (K = T) on this rank's half; DDP-wrapped when ``world > 1``."""
    from fptt_ext.fptt import SequenceTrainer

    torch.set_num_threads(1)
    model = make_model()
    inner = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # The neuron state lives in (non-persistent) buffers: DDP must not broadcast them.
        model = DDP(model, forward_sync_buffers=False)
    trainer = SequenceTrainer(model, torch.optim.SGD(model.parameters(), lr=0.2), method="fptt",
                              loss="per_step", variant=variant)
    per = B // world
    losses = []
    for x, y in zip(*data()):
        sl = slice(rank * per, (rank + 1) * per)
        losses.append(trainer.train_batch(x[:, sl], y[:, sl]).loss)
    return {"state": fptt_state(trainer, inner), "losses": losses}


def default_ddp_error() -> str:
    """The trainer's error for DDP with buffer broadcasting on (the default)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from fptt_ext.fptt import SequenceTrainer

    model = DDP(make_model())
    try:
        SequenceTrainer(model, torch.optim.SGD(model.parameters(), lr=0.2), loss="per_step")
    except ValueError as e:
        return str(e)
    return ""


def main() -> None:
    import torch.distributed as dist

    out_dir = sys.argv[1]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = {"error": default_ddp_error()}
        for variant in ("practical", "exact"):
            result[variant] = train(variant, rank, world)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
