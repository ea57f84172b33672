"""The networks, data and training methods the benchmarks compare, built identically for each method.

Networks (:data:`NETWORKS`):

* ``"rmnist"`` - the R-MNIST net of the papers (``OSTLNet``: 784-256-256 LTC-SN, LI 10; ``hidden=``
  changes the widths), input a rate-coded spike frame per step ``[B, 784]``;
* ``"scnn"`` - the static Fashion-MNIST SCNN (``SCNN``; ``width=`` scales the channels as in
  ``scnn_fmnist_narrow``), input the same image at every step ``[B, 1, 28, 28]``.

Both are built with ``backend="spikingjelly"`` by default: their neurons are then
``fptt_ext.spikingjelly.LTCNode``/``LINode``, SpikingJelly ``MemoryModule`` s, which is what
SpikingJelly's ``fptt_online_training`` needs to save and restore the state (with the
snnTorch-backed neurons it would not restore it). Every method thus trains the very same
modules with the same neuron math (:func:`fptt_ext.neurons.functional.ltc_step`).

Methods (:data:`METHODS`), each one call per sequence ``x [T, B, ...]``, labels ``y [B]``, with the
same per-step loss (cross-entropy of the readout against the label at every step, as SpikingJelly's
``f_loss_t(y_t, target_t)`` needs a per-step target) and the same optimizer:

* ``"fptt"`` - :class:`~fptt_ext.fptt.SequenceTrainer`, FPTT practical variant, K = T;
* ``"fptt-fused"`` - the same with ``FPTT(fused=True)``: its updates compiled into one kernel per
  parameter (needs a C++ compiler; compiled in the warm-up rounds);
* ``"fptt-exact"`` - the same, exact variant (a second forward/backward per step, like SpikingJelly's);
* ``"tbptt"`` - TBPTT-1: plain back-propagation and an update at every step, no regulariser;
* ``"tbptt-traffic"`` - TBPTT-1 whose every update also reads and writes two more parameter-sized
  buffers once (one pass, no arithmetic): the memory traffic of FPTT's ``W_bar`` and ``lam``, which
  a fused FPTT step cannot avoid. It prices that traffic, so FPTT's step can be compared with it;
* ``"bptt"`` - one update after back-propagating through all T steps;
* ``"sj-fptt"`` - ``spikingjelly.activation_based.learning.online_learning.fptt_online_training``.

Each method with ``"+compile"`` appended (``"tbptt+compile"``, ``"sj-fptt+compile"``, ...) trains
through ``torch.compile(model)`` (``SequenceTrainer(compile=True)``; SpikingJelly's function gets
the compiled module); compilation happens in the warm-up rounds.

Example:
    >>> import torch
    >>> w = make_workload("sj-fptt", "rmnist", hidden=(8,), batch_size=2)
    >>> x, y = make_data("rmnist", T=3, batch_size=2)
    >>> w.run(x, y); w.updates
    3
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fptt.compiled import CompiledForward
from ..fptt.loop import SequenceTrainer
from ..zoo.ostl import OSTLNet
from ..zoo.scnn import SCNN, STATIC_LAYERS

__all__ = ["METHODS", "NETWORKS", "Workload", "add_state_traffic", "build_network", "make_data", "make_workload"]

COMPILED = "+compile"
_BASE_METHODS = ("fptt", "fptt-fused", "fptt-exact", "tbptt", "tbptt-traffic", "bptt", "sj-fptt")
METHODS = _BASE_METHODS + tuple(m + COMPILED for m in _BASE_METHODS)
NETWORKS = ("rmnist", "scnn")
LABELS = {"fptt": "FPTT (practical)", "fptt-fused": "FPTT (practical, fused)", "fptt-exact": "FPTT (exact)",
          "tbptt": "TBPTT-1", "tbptt-traffic": "TBPTT-1 + FPTT state traffic", "bptt": "BPTT",
          "sj-fptt": "SpikingJelly fptt_online_training"}
LABELS.update({m + COMPILED: f"{label}, torch.compile" for m, label in LABELS.items()})


def check_choice(what: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def build_network(network: str = "rmnist", *, hidden=(256, 256), width: float = 1.0, backend: str = "spikingjelly",
                  seed: int = 0) -> nn.Module:
    """The benchmark network, initialised from ``seed`` (so every method starts from the same weights).

    >>> sum(p.numel() for p in build_network(hidden=(256, 256)).parameters())
    794844
    """
    check_choice("network", network, NETWORKS)
    torch.manual_seed(seed)
    if network == "rmnist":
        return OSTLNet(n_in=784, hidden=tuple(hidden), n_out=10, backend=backend)
    return SCNN(STATIC_LAYERS, (1, 28, 28), 10, width=width, backend=backend)


def make_data(network: str, T: int, batch_size: int, *, rate: float = 0.2, seed: int = 1):
    """One training sequence ``x [T, B, ...]`` and labels ``y [B]``, the same for every method.

    R-MNIST: Bernoulli spikes of probability ``rate`` per pixel and step (rate coding).
    SCNN: one image per sample, repeated over T as a zero-copy view (the static-image task).

    >>> x, y = make_data("scnn", T=4, batch_size=2)
    >>> x.shape, x.stride(0), y.shape
    (torch.Size([4, 2, 1, 28, 28]), 0, torch.Size([2]))
    """
    check_choice("network", network, NETWORKS)
    if T < 1 or batch_size < 1:
        raise ValueError(f"need T >= 1 and batch_size >= 1, got T={T}, batch_size={batch_size}")
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    if network == "rmnist":
        # filled step by step: no T-sized temporaries, whose freed pages would blur the
        # memory benchmark's baseline (peak RSS before training)
        x = torch.empty(T, batch_size, 784)
        for x_t in x:
            x_t.copy_(torch.rand(batch_size, 784, generator=g) < rate)
        return x, y
    return torch.rand(batch_size, 1, 28, 28, generator=g).expand(T, -1, -1, -1, -1), y


def make_optimizer(params, lr: float = 1e-3) -> torch.optim.Optimizer:
    # fused=True: on CPU torch otherwise loops over the parameters (or runs ~10 foreach
    # kernels), 2.8x slower on the R-MNIST net. Every method gets the same optimizer.
    return torch.optim.Adam(params, lr=lr, fused=True)


class Workload:
    """A network, its optimizer and a training method; :meth:`run` trains on one sequence.

    >>> model = build_network(hidden=(8,))
    >>> w = Workload("tbptt", model, make_optimizer(model.parameters()))
    >>> x, y = make_data("rmnist", T=2, batch_size=2)
    >>> w.run(x, y); w.method, w.updates
    ('tbptt', 2)
    """

    def __init__(self, method: str, model: nn.Module, optimizer: torch.optim.Optimizer, alpha: float = 0.1):
        check_choice("method", method, METHODS)
        self.method, self.model, self.alpha, self.updates = method, model, alpha, 0
        self.torch_optimizer = optimizer
        base, compiled = method.removesuffix(COMPILED), method.endswith(COMPILED)
        self.spikingjelly = base == "sj-fptt"  # SpikingJelly's own training function, not our trainer
        if self.spikingjelly:
            from spikingjelly.activation_based.learning.online_learning import fptt_online_training_init_w_ra

            self.w_ra = fptt_online_training_init_w_ra(optimizer)
            self.sj_model = CompiledForward(model).module if compiled else model
        else:
            kind = base.split("-")[0]  # fptt-fused, fptt-exact: fptt; tbptt-traffic: tbptt
            variant = "exact" if base == "fptt-exact" else "practical"
            self.trainer = SequenceTrainer(model, optimizer, method=kind, k=1, loss="per_step", alpha=alpha,
                                           variant=variant, fused=base == "fptt-fused", compile=compiled)
            if base == "tbptt-traffic":
                add_state_traffic(optimizer)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Reset the state and train on ``x`` ``[T, B, ...]`` with labels ``y`` ``[B]``."""
        target = y.expand(x.shape[0], -1)  # the label at every step
        if not self.spikingjelly:
            self.updates = self.trainer.train_batch(x, target).updates
            return
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.learning.online_learning import fptt_online_training

        functional.reset_net(self.model)
        fptt_online_training(self.sj_model, self.torch_optimizer, x, target, F.cross_entropy, self.alpha, self.w_ra)
        self.updates = x.shape[0]


def add_state_traffic(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """After every ``optimizer.step()``, read and write two more buffers the size of its parameters.

    That is the memory traffic FPTT's state adds to an update even when the whole step is one
    fused pass (read ``W_bar`` and ``lam``, write both), without FPTT's arithmetic: one
    ``_foreach_mul_`` by 1.0 over the buffers, which leaves them as they are. Returns the buffers.

    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> sgd = torch.optim.SGD([w], lr=0.1)
    >>> buffers = add_state_traffic(sgd)
    >>> w.grad = torch.ones(3); sgd.step()
    >>> len(buffers), buffers[0].tolist()                   # one pass over them, values kept
    (2, [1.0, 1.0, 1.0])
    """
    buffers = [p.detach().clone() for g in optimizer.param_groups for p in g["params"] for _ in range(2)]
    optimizer.register_step_post_hook(lambda *_: torch._foreach_mul_(buffers, 1.0))
    return buffers


def make_workload(method: str, network: str = "rmnist", *, hidden=(256, 256), width: float = 1.0,
                  backend: str = "spikingjelly", batch_size: int = 16, seed: int = 0, lr: float = 1e-3) -> Workload:
    """Build the network (weights from ``seed``), an Adam optimizer and ``method``'s training step.

    The network is run once on a zero batch first, so lazily sized state exists before the
    optimizer (and FPTT's ``W_bar``/``lam``) are created, as a training script would do.

    >>> w = make_workload("fptt", hidden=(8,), batch_size=2)
    >>> type(w).__name__, w.method, type(w.torch_optimizer).__name__
    ('Workload', 'fptt', 'Adam')
    >>> x, y = make_data("rmnist", T=2, batch_size=2)
    >>> w.run(x, y); w.updates
    2
    """
    check_choice("method", method, METHODS)
    model = build_network(network, hidden=hidden, width=width, backend=backend, seed=seed)
    x, _ = make_data(network, 1, batch_size)
    with torch.no_grad():
        model(x[0])
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    return Workload(method, model, make_optimizer(model.parameters(), lr))
