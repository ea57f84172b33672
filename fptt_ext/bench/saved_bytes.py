"""Measurements of the training methods: memory saved for backward per update.

:func:`saved_bytes_per_update` runs one training sequence under
``torch.autograd.graph.saved_tensors_hooks`` and reports the bytes of the tensors
autograd saves for backward, per update. It is deterministic (no timing, no
allocator noise), so it can be asserted in tests: FPTT (K = T) saves the same
bytes per update whatever T is; BPTT saves bytes proportional to T.

Example:
    >>> a = saved_bytes_per_update("fptt", T=5, batch_size=2, hidden=(8,))
    >>> b = saved_bytes_per_update("fptt", T=10, batch_size=2, hidden=(8,))
    >>> a["bytes_per_update"] == b["bytes_per_update"], a["updates"], b["updates"]
    (True, 5, 10)
"""

from __future__ import annotations

import torch

from ..fptt.loop import SequenceTrainer
from ..zoo.ostl import OSTLNet

__all__ = ["saved_bytes_per_update", "saved_bytes_table"]


def saved_bytes_per_update(method: str, T: int, *, batch_size: int = 16, hidden: tuple[int, ...] = (256, 256),
                           n_in: int = 784, k: int = 1, K: int | None = None, seed: int = 0) -> dict:
    """Bytes saved for backward per update when training the R-MNIST network on one
    random spike sequence ``[T, batch_size, n_in]`` with ``method`` ("fptt", "bptt", "tbptt").

    ``bytes_per_update`` is the largest count of any update (the memory one update needs);
    ``bytes_total`` sums all updates of the sequence.

    Example:
        >>> r = saved_bytes_per_update("bptt", T=4, batch_size=2, n_in=10, hidden=(8,))
        >>> r["updates"], r["bytes_per_update"] == r["bytes_total"]   # BPTT: one update per sequence
        (1, True)
    """
    torch.manual_seed(seed)
    model = OSTLNet(n_in=n_in, hidden=hidden, n_out=10)
    trainer = SequenceTrainer(model, torch.optim.SGD(model.parameters(), lr=1e-3), method=method, K=K, k=k,
                              loss="classification", num_classes=10)
    x = (torch.rand(T, batch_size, n_in) < 0.2).float()
    y = torch.randint(0, 10, (batch_size,))
    saved, per_update = [0], []

    def pack(t: torch.Tensor):
        saved[0] += t.numel() * t.element_size()
        return t

    def update_boundary(*_):  # the optimizer steps once per window: close its count
        per_update.append(saved[0])
        saved[0] = 0

    torch_optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # FPTT wraps one
    handle = torch_optimizer.register_step_pre_hook(update_boundary)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = trainer.train_batch(x, y)
    finally:
        handle.remove()
    return {"method": method, "T": T, "updates": result.updates, "bytes_total": sum(per_update),
            "bytes_per_update": max(per_update)}


def saved_bytes_table(Ts=(20, 100, 500, 1000), methods=("fptt", "bptt"), **kwargs) -> list[dict]:
    """:func:`saved_bytes_per_update` for every method and T.

    Example:
        >>> rows = saved_bytes_table(Ts=(4, 8), batch_size=2, n_in=10, hidden=(8,))
        >>> [(r["method"], r["T"], r["updates"]) for r in rows]
        [('fptt', 4, 4), ('fptt', 8, 8), ('bptt', 4, 1), ('bptt', 8, 1)]
    """
    return [saved_bytes_per_update(m, T, **kwargs) for m in methods for T in Ts]
