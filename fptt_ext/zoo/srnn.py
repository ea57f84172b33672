"""The papers' spiking recurrent networks (SRNNs) and the Add-task LSTM baseline.

* :class:`SRNN` - S-MNIST / PS-MNIST: one recurrent LTC-SN layer of 512 and an LI readout of 10.
* :class:`DVSGestureSRNN` - long DVS-Gesture: ``[1024,1024]-[512D,512D]-512R-11I`` (one
  dense branch per event polarity of the 32x32 frames, a recurrent layer, an LI readout).
* :class:`AddTaskSNN` - 128 recurrent LTC-SN (or ALIF) neurons, ``Linear -> 1``
  readout of the spikes; state kept in the neuron, called as ``out = net(x_t)``.
* :class:`AddTaskLSTM` - the LSTM baseline, ``nn.LSTMCell`` + ``Linear -> 1``,
  called as ``out, state = net(x_t, state)`` (``SequenceTrainer(explicit_state=True)``).
* :func:`addtask_model` - build one by name, with the ``explicit_state`` flag.

Example:
    >>> import torch
    >>> from fptt_ext import SequenceTrainer
    >>> net, explicit = addtask_model("ltc", hidden=8)
    >>> trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 3e-3),
    ...                           loss="regression_end", explicit_state=explicit)
    >>> result = trainer.train_batch(torch.rand(5, 4, 2), torch.rand(4))
    >>> result.outputs.shape, result.updates
    (torch.Size([5, 4, 1]), 5)
"""

from __future__ import annotations

import torch
from torch import nn

from ..neurons.recurrent import RecurrentSpiking
from .base import Branches, SpikingNet, make_neuron, make_readout

__all__ = ["ADDTASK_MODELS", "SRNN", "AddTaskLSTM", "AddTaskSNN", "DVSGestureSRNN", "addtask_model"]

ADDTASK_MODELS = ("ltc", "alif", "lstm")
RECURRENT_NEURONS = ("ltc", "ltc-minus", "alif")


def _recurrent(n_in: int, hidden: int, neuron: str, backend: str) -> RecurrentSpiking:
    if backend != "snntorch":
        raise ValueError("recurrent zoo networks are built from snnTorch layers (backend='snntorch'); "
                         "their multi-step mode loops over T")
    if neuron not in RECURRENT_NEURONS:
        raise ValueError(f"a recurrent layer needs a neuron that exposes its last spike: one of {RECURRENT_NEURONS}, "
                         f"got {neuron!r}")
    return RecurrentSpiking(n_in, hidden, make_neuron(neuron, hidden))


class SRNN(SpikingNet):
    """``n_in -> {hidden}R -> {num_classes}I``: the S-MNIST / PS-MNIST network (one pixel per step).

    Example:
        >>> from fptt_ext.zoo.base import architecture
        >>> net = SRNN()
        >>> architecture(net), net(torch.rand(3, 1)).shape
        ('512R-10I', torch.Size([3, 10]))
    """

    def __init__(self, n_in: int = 1, hidden: int = 512, num_classes: int = 10, neuron: str = "ltc",
                 backend: str = "snntorch", step_mode: str = "s"):
        layers = nn.Sequential(_recurrent(n_in, hidden, neuron, backend), nn.Linear(hidden, num_classes),
                               make_readout(num_classes))
        super().__init__(layers, backend=backend, step_mode=step_mode, input_shape=(n_in,))


class DVSGestureSRNN(SpikingNet):
    """``[1024,1024]-[512D,512D]-512R-11I`` on ``[B, 2, 32, 32]`` frames (one branch per polarity).

    Example:
        >>> from fptt_ext.zoo.base import architecture
        >>> net = DVSGestureSRNN()
        >>> architecture(net)
        '[1024,1024]-[512D,512D]-512R-11I'
        >>> net(torch.rand(2, 2, 32, 32)).shape
        torch.Size([2, 11])
    """

    def __init__(self, in_shape=(2, 32, 32), branch: int = 512, hidden: int = 512, num_classes: int = 11,
                 neuron: str = "ltc", backend: str = "snntorch", step_mode: str = "s"):
        per_channel = in_shape[1] * in_shape[2]
        rec = _recurrent(branch * in_shape[0], hidden, neuron, backend)
        branches = Branches([per_channel] * in_shape[0],
                            [nn.Sequential(nn.Linear(per_channel, branch), make_neuron(neuron, branch))
                             for _ in range(in_shape[0])])
        layers = nn.Sequential(branches, rec, nn.Linear(hidden, num_classes), make_readout(num_classes))
        super().__init__(layers, backend=backend, step_mode=step_mode, input_shape=tuple(in_shape))


class AddTaskSNN(SpikingNet):
    """``RecurrentSpiking(in_features, hidden, LTC | ALIF) -> Linear(hidden, 1)``.

    One call is one time step: ``x_t`` ``[B, in_features]`` -> prediction ``[B, 1]``.
    The recurrent state lives in ``self.rnn.neuron`` (reset/detached by
    :class:`fptt_ext.SequenceTrainer`).

    Example:
        >>> import torch
        >>> net = AddTaskSNN("alif", hidden=16)
        >>> net(torch.rand(3, 2)).shape
        torch.Size([3, 1])
        >>> type(net.rnn.neuron).__name__
        'ALIF'
    """

    def __init__(self, neuron: str = "ltc", hidden: int = 128, in_features: int = 2, backend: str = "snntorch",
                 step_mode: str = "s"):
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        super().__init__(backend=backend, step_mode=step_mode, input_shape=(in_features,))
        self.neuron_type, self.hidden = neuron, hidden
        self.rnn = _recurrent(in_features, hidden, neuron, backend)
        self.readout = nn.Linear(hidden, 1)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.rnn(x))


class AddTaskLSTM(nn.Module):
    """``nn.LSTMCell(in_features, hidden) -> Linear(hidden, 1)`` with user-held state.

    Example:
        >>> import torch
        >>> net = AddTaskLSTM(hidden=16)
        >>> out, state = net(torch.rand(3, 2))            # state None: zeros
        >>> out, state = net(torch.rand(3, 2), state)
        >>> out.shape, [s.shape for s in state]
        (torch.Size([3, 1]), [torch.Size([3, 16]), torch.Size([3, 16])])
    """

    def __init__(self, hidden: int = 128, in_features: int = 2):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.hidden = hidden
        self.cell = nn.LSTMCell(in_features, hidden)
        self.readout = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        h, c = self.cell(x, state)
        return self.readout(h), (h, c)


def addtask_model(name: str, hidden: int = 128) -> tuple[nn.Module, bool]:
    """``(model, explicit_state)`` for ``name`` in ``"ltc"``, ``"alif"``, ``"lstm"``.

    >>> net, explicit = addtask_model("lstm", hidden=4)
    >>> type(net).__name__, explicit
    ('AddTaskLSTM', True)
    >>> addtask_model("gru")
    Traceback (most recent call last):
    ...
    ValueError: unknown Add-task model 'gru'; use one of ('ltc', 'alif', 'lstm')
    """
    if name == "lstm":
        return AddTaskLSTM(hidden), True
    if name in ("ltc", "alif"):
        return AddTaskSNN(name, hidden), False
    raise ValueError(f"unknown Add-task model {name!r}; use one of {ADDTASK_MODELS}")
