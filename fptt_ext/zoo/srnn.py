"""The papers' spiking recurrent networks (SRNNs) and the Add-task LSTM baseline.

* :class:`SRNN` - S-MNIST / PS-MNIST: one recurrent LTC-SN layer of 512 and an LI readout of 10.
* :class:`DVSGestureSRNN` - long DVS-Gesture: ``[1024,1024]-[512D,512D]-512R-11I`` (one
  dense branch per event polarity of the 32x32 frames, a recurrent layer, an LI readout).
* :class:`AddTaskSNN` - 128 recurrent LTC-SN (or ALIF) neurons, ``Linear -> 1``
  readout of the membrane potential; state kept in the neuron, called as ``out = net(x_t)``.
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

__all__ = ["ADDTASK_MODELS", "SRNN", "AddTaskLSTM", "AddTaskSNN", "DVSGestureSRNN", "addtask_model",
           "addtask_neuron_defaults"]

ADDTASK_MODELS = ("ltc", "ltc-minus", "alif", "plif", "lstm")
READOUTS = ("mem", "spk")


def addtask_neuron_defaults(neuron: str) -> tuple[float, float]:
    """``(threshold, beta_a)`` of the Add-task network's neuron when none are given.

    ``ltc``: the authors' Add-task neuron, a constant threshold of 0.5 and no adaptation
    (their ``snn_models_LIF4.py``), which also trained best here (docs/addtask.md).
    ``ltc-minus`` and ``alif``: ``b0 = 0.1``, ``beta_a = 1.8`` (docs/concepts/ltc.md), since their
    adaptation is what sets them apart. ``plif`` (the baseline, no adaptation) fires where
    ``ltc`` does, at 0.5.

    >>> addtask_neuron_defaults("ltc"), addtask_neuron_defaults("alif"), addtask_neuron_defaults("plif")
    ((0.5, 0.0), (0.1, 1.8), (0.5, 0.0))
    """
    return (0.5, 0.0) if neuron in ("ltc", "plif") else (0.1, 1.8)


def _recurrent(n_in: int, hidden: int, neuron: str, backend: str, **neuron_kwargs) -> RecurrentSpiking:
    if backend != "snntorch":
        raise ValueError("recurrent zoo networks are built from snnTorch layers (backend='snntorch'); "
                         "their multi-step mode loops over T")
    return RecurrentSpiking(n_in, hidden, make_neuron(neuron, hidden, **neuron_kwargs))


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
    """The papers' Add-task network: 128 recurrent spiking neurons and ``Linear(hidden, 1)``.

    ``I_t = W [x_t, s_{t-1}] + b`` feeds the neurons (one :class:`RecurrentSpiking`
    layer, initialised as one ``nn.Linear`` over the concatenation, as in the authors'
    code); the prediction at step t is ``Linear(hidden, 1)`` of the **membrane
    potential** ``u_t`` (``readout="mem"``, the authors' choice) or of the spikes
    (``readout="spk"``). The readout weight starts Xavier-normal, as theirs.

    ``threshold`` (``b0``), ``beta_a`` and ``detach_adaptation`` go to the neuron. Left at
    ``None``, threshold and ``beta_a`` are :func:`addtask_neuron_defaults`: for ``"ltc"`` the
    authors' Add-task neuron, a constant threshold of 0.5 and no adaptation. The adaptive
    LTC-SN of docs/concepts/ltc.md is ``threshold=0.1, beta_a=1.8``; over windows of 100 steps it needs
    ``detach_adaptation=True`` (:class:`fptt_ext.LTC`), or its gradients explode.

    One call is one time step: ``x_t`` ``[B, in_features]`` -> prediction ``[B, 1]``.
    The recurrent state lives in ``self.rnn.neuron`` (reset/detached by
    :class:`fptt_ext.SequenceTrainer`).

    Example:
        >>> import torch
        >>> net = AddTaskSNN("alif", hidden=16)
        >>> net(torch.rand(3, 2)).shape
        torch.Size([3, 1])
        >>> type(net.rnn.neuron).__name__, net.readout_from
        ('ALIF', 'mem')
        >>> AddTaskSNN("ltc", hidden=4).rnn.neuron.extra_repr()          # the authors' Add-task neuron
        "size=4, conv=False, b0=0.5, beta_a=0, reset='zero'"
        >>> AddTaskSNN("ltc", hidden=4, threshold=0.1, beta_a=1.8).rnn.neuron.extra_repr()   # the adaptive LTC-SN
        "size=4, conv=False, b0=0.1, beta_a=1.8, reset='zero'"
        >>> AddTaskSNN("plif", hidden=4).rnn.neuron.neuron.v_threshold      # the PLIF baseline fires where it does
        0.5
    """

    def __init__(self, neuron: str = "ltc", hidden: int = 128, in_features: int = 2, backend: str = "snntorch",
                 step_mode: str = "s", *, readout: str = "mem", threshold: float | None = None,
                 beta_a: float | None = None, detach_adaptation: bool = False):
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        super().__init__(backend=backend, step_mode=step_mode, input_shape=(in_features,))
        self.neuron_type, self.hidden, self.readout_from = neuron, hidden, readout
        default_threshold, default_beta_a = addtask_neuron_defaults(neuron)
        threshold = default_threshold if threshold is None else threshold
        beta_a = default_beta_a if beta_a is None else beta_a
        if neuron == "plif":  # SpikingJelly's node: a threshold, nothing to adapt
            if beta_a or detach_adaptation:
                raise ValueError("neuron='plif' has no adaptation; leave beta_a and detach_adaptation unset")
            self.rnn = _recurrent(in_features, hidden, neuron, backend, threshold=threshold)
        else:
            self.rnn = _recurrent(in_features, hidden, neuron, backend, threshold=threshold, beta_a=beta_a,
                                  detach_adaptation=detach_adaptation)
        # One nn.Linear over [x_t, s_{t-1}] (the authors' layer): U(+-1/sqrt(fan_in)) for
        # both parts, fan_in = in_features + hidden, and the bias on the input part.
        bound = (in_features + hidden) ** -0.5
        nn.init.uniform_(self.rnn.fc.weight, -bound, bound)
        nn.init.uniform_(self.rnn.fc.bias, -bound, bound)
        nn.init.uniform_(self.rnn.rec.weight, -bound, bound)
        self.readout = nn.Linear(hidden, 1)
        nn.init.xavier_normal_(self.readout.weight)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        spk = self.rnn(x)
        return self.readout(self._membrane() if self.readout_from == "mem" else spk)

    def _membrane(self) -> torch.Tensor:
        n = self.rnn.neuron
        # a SpikingJelly node (PLIF) sits inside LastSpike and calls its membrane v
        return n.mem if hasattr(n, "mem") else n.neuron.v


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


def addtask_model(name: str, hidden: int = 128, **kwargs) -> tuple[nn.Module, bool]:
    """``(model, explicit_state)`` for ``name`` in ``"ltc"``, ``"ltc-minus"``, ``"alif"``, ``"plif"``, ``"lstm"``.

    Keyword arguments (``readout``, ``threshold``, ``beta_a``, ``detach_adaptation``) go to
    :class:`AddTaskSNN`.

    >>> net, explicit = addtask_model("lstm", hidden=4)
    >>> type(net).__name__, explicit
    ('AddTaskLSTM', True)
    >>> addtask_model("gru")
    Traceback (most recent call last):
    ...
    ValueError: unknown Add-task model 'gru'; use one of ('ltc', 'ltc-minus', 'alif', 'plif', 'lstm')
    """
    if name == "lstm":
        return AddTaskLSTM(hidden), True
    if name in ADDTASK_MODELS:
        return AddTaskSNN(name, hidden, **kwargs), False
    raise ValueError(f"unknown Add-task model {name!r}; use one of {ADDTASK_MODELS}")
