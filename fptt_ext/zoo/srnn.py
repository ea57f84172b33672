"""Recurrent networks of the papers' Add-task experiment (SPEC section 3).

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
from ..neurons.snntorch import ALIF, LTC

__all__ = ["ADDTASK_MODELS", "AddTaskLSTM", "AddTaskSNN", "addtask_model"]

ADDTASK_MODELS = ("ltc", "alif", "lstm")
_NEURONS = {"ltc": LTC, "alif": ALIF}


class AddTaskSNN(nn.Module):
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

    def __init__(self, neuron: str = "ltc", hidden: int = 128, in_features: int = 2):
        super().__init__()
        if neuron not in _NEURONS:
            raise ValueError(f"unknown spiking neuron {neuron!r}; use one of {tuple(_NEURONS)}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.neuron_type, self.hidden = neuron, hidden
        self.rnn = RecurrentSpiking(in_features, hidden, _NEURONS[neuron](init_hidden=True, size=hidden))
        self.readout = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
    if name in _NEURONS:
        return AddTaskSNN(name, hidden), False
    raise ValueError(f"unknown Add-task model {name!r}; use one of {ADDTASK_MODELS}")
