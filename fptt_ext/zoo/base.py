"""What every zoo network shares: SpikingJelly's step-mode convention, the neuron switch
(``neuron=``), the backend switch (``backend=``) and the layer notation of the papers.

* :class:`SpikingNet` - a ``StepModule``: ``step_mode="s"`` (default, what the FPTT loop
  drives) maps ``x_t`` ``[B, ...]`` to ``[B, n_out]``; ``step_mode="m"`` maps ``x_seq``
  ``[T, B, ...]`` to ``[T, B, n_out]``. ``spikingjelly...functional.reset_net`` resets it
  whichever backend built its layers.
* :func:`make_neuron` - one spiking layer of the chosen kind for the chosen backend.
* :func:`architecture` - the papers' notation (``ConvK3C32S1P1-MPK2S2-...-10I``) read
  off the built modules, so tests compare the real layers with the papers' (docs/zoo.md, "The networks").

Example:
    >>> import torch
    >>> from spikingjelly.activation_based import functional
    >>> net = SpikingNet(nn.Sequential(nn.Linear(4, 8), make_neuron("ltc", 8), nn.Linear(8, 3),
    ...                                make_readout(3)))
    >>> architecture(net)
    '8D-3I'
    >>> net(torch.rand(2, 4)).shape                       # one step
    torch.Size([2, 3])
    >>> functional.set_step_mode(net, "m")
    >>> net(torch.rand(5, 2, 4)).shape                    # a whole sequence
    torch.Size([5, 2, 3])
    >>> functional.reset_net(net)
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from ..fptt.state import StatefulModules
from ..neurons import spikingjelly as sj_nodes
from ..neurons.gates import is_all_finite
from ..neurons.snntorch import ALIF, LI, LTC
from ..neurons.surrogate import MultiGaussian

__all__ = ["BACKENDS", "NEURONS", "Branches", "SpikingNet", "architecture", "layers_for", "make_neuron",
           "make_readout"]

NEURONS = ("ltc", "ltc-minus", "alif", "leaky", "plif")
PLIF_THRESHOLD = 0.1  # the PLIF baseline fires where the LTC-SN's base threshold b0 is
BACKENDS = ("snntorch", "spikingjelly")


def _check(neuron: str, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {NEURONS}")
    if neuron == "leaky" and backend == "spikingjelly":
        raise ValueError("snntorch's Leaky runs one step per call; use backend='snntorch' with neuron='leaky'")


def make_neuron(neuron: str, size: int, *, conv: bool = False, backend: str = "snntorch",
                **neuron_kwargs) -> nn.Module:
    """A spiking layer of ``size`` neurons (channels if ``conv``) that keeps its own state.

    ``neuron``: ``"ltc"`` (LTC-SN), ``"ltc-minus"`` (liquid membrane, constant adaptation),
    ``"alif"`` (constant gates), ``"leaky"`` (``snntorch.Leaky``, beta 0.9 learned) or
    ``"plif"`` (``spikingjelly...ParametricLIFNode`` with ``v_threshold=0.1``, the LTC-SN's
    ``b0``); the two baselines use the multi-Gaussian surrogate too, so only the neuron model
    differs. ``neuron_kwargs`` (``threshold``, ``beta_a``, ...) go to the LTC-SN / ALIF
    constructors; PLIF takes ``threshold`` (its ``v_threshold``) alone.

    >>> type(make_neuron("plif", 4)).__name__, type(make_neuron("ltc", 4, backend="spikingjelly")).__name__
    ('ParametricLIFNode', 'LTCNode')
    """
    _check(neuron, backend)
    conv = True if conv else None
    plif_threshold = neuron_kwargs.pop("threshold", PLIF_THRESHOLD) if neuron == "plif" else None
    if neuron_kwargs and neuron in ("plif", "leaky"):
        allowed = "threshold" if neuron == "plif" else "none"
        raise ValueError(f"neuron options {sorted(neuron_kwargs)} apply to ltc, ltc-minus and alif, not {neuron!r} "
                         f"(which takes {allowed})")
    if neuron == "plif":
        # The LTC-SN's firing threshold (b0 = 0.1) rather than SpikingJelly's 1.0: with 1.0 these nets
        # start silent (no spike, so no surrogate gradient; 10% on MNIST-5k after 2 epochs of
        # ostl_mnist5k), and the comparison should be of the dynamics, not of the input scale.
        return sj_neuron.ParametricLIFNode(surrogate_function=MultiGaussian(), detach_reset=False,
                                           v_threshold=plif_threshold)
    if neuron == "leaky":
        import snntorch as snn

        return snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True, spike_grad=MultiGaussian())
    if backend == "snntorch":
        if neuron == "alif":
            return ALIF(init_hidden=True, size=size, conv=conv, **neuron_kwargs)
        return LTC(init_hidden=True, size=size, conv=conv, liquid_adp=neuron == "ltc", **neuron_kwargs)
    if neuron == "alif":
        return sj_nodes.ALIFNode(size=size, conv=conv, **neuron_kwargs)
    return sj_nodes.LTCNode(size=size, conv=conv, liquid_adp=neuron == "ltc", **neuron_kwargs)


def make_readout(size: int, *, backend: str = "snntorch") -> nn.Module:
    """The leaky-integrator readout (``I`` in the notation): its state is the prediction.

    Example:
        >>> type(make_readout(10)).__name__, type(make_readout(10, backend="spikingjelly")).__name__
        ('LI', 'LINode')
    """
    return LI(init_hidden=True, size=size) if backend == "snntorch" else sj_nodes.LINode(size=size)


class _Layers:
    """Stateless layers of one backend: torch's for snnTorch, SpikingJelly's (with a step mode) otherwise."""

    def __init__(self, backend: str):
        self.lib = nn if backend == "snntorch" else sj_layer

    def __getattr__(self, name):
        return getattr(self.lib, name)


def layers_for(backend: str) -> _Layers:
    """``layers_for(backend).Conv2d(...)`` etc.: ``torch.nn`` or ``spikingjelly...layer``.

    Example:
        >>> L = layers_for("spikingjelly")
        >>> conv = L.Conv2d(1, 4, 3); type(conv).__module__.startswith("spikingjelly"), conv.step_mode
        (True, 's')
        >>> layers_for("snntorch").Linear is nn.Linear
        True
    """
    _check("ltc", backend)
    return _Layers(backend)


class Branches(nn.Module):
    """Split the input along dim 1 into ``sizes`` and run one branch on each; concatenate.

    The papers' ``[1024,1024]-[512D,512D]`` (one branch per event polarity).

    >>> b = Branches([2, 3], [nn.Linear(2, 4), nn.Linear(3, 4)])
    >>> b(torch.rand(5, 5)).shape
    torch.Size([5, 8])
    """

    def __init__(self, sizes: list[int], branches: list[nn.Module]):
        super().__init__()
        if len(sizes) != len(branches):
            raise ValueError(f"{len(sizes)} input sizes for {len(branches)} branches")
        self.sizes = list(sizes)
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != sum(self.sizes):
            raise ValueError(f"expected {sum(self.sizes)} input features per sample (split {self.sizes}), "
                             f"got {x.shape[1]}")
        return torch.cat([b(part) for b, part in zip(self.branches, x.split(self.sizes, dim=1))], dim=1)


class SpikingNet(base.StepModule, nn.Module):
    """A network that follows SpikingJelly's step-mode convention on either backend.

    ``forward_step(x_t)`` (default: ``self.layers(x_t)``) is one time step. In
    multi-step mode a snnTorch-built net loops over ``T``; a SpikingJelly-built net
    passes the whole ``[T, B, ...]`` tensor through its multi-step layers at once.

    Example:
        >>> import torch
        >>> net = SpikingNet(nn.Sequential(nn.Linear(3, 4), make_neuron("ltc", 4), nn.Linear(4, 2), make_readout(2)))
        >>> net(torch.rand(5, 3)).shape                      # step_mode "s": one step [B, ...]
        torch.Size([5, 2])
        >>> net.step_mode = "m"; net(torch.rand(7, 5, 3)).shape   # "m": a sequence [T, B, ...]
        torch.Size([7, 5, 2])
    """

    # True for topologies that split or concatenate along dim 1 (SpikingJelly's multi-step
    # layers would read [T, B, ...] on the wrong dimension): the sub-modules then always run
    # single-step and multi-step mode loops over T here, whichever backend built them.
    loops_over_time = False

    def __init__(self, layers: nn.Module | None = None, *, backend: str = "snntorch", step_mode: str = "s",
                 input_shape: tuple[int, ...] | None = None):
        nn.Module.__init__(self)
        _check("ltc", backend)
        self.backend = backend
        self.input_shape = None if input_shape is None else tuple(input_shape)
        if layers is not None:
            self.layers = layers
        self._step_mode = "s"
        self._step_children = None  # the StepModules below this net, found at the first call
        self.step_mode = step_mode

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' (one step per call) or 'm' ([T, B, ...]), got {value!r}")
        self._step_mode = value
        if self.backend == "spikingjelly" and not self.loops_over_time:
            for m in self.modules():
                if m is not self and isinstance(m, base.StepModule):
                    m.step_mode = value

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} expects a floating-point tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}; convert it with x.float()")
        lead = 1 if self.step_mode == "s" else 2
        what = "[B, ...]" if lead == 1 else "[T, B, ...]"
        if self.input_shape is not None:
            what = what.replace("...", ", ".join(map(str, self.input_shape)))
        bad = x.dim() < lead + 1 or 0 in x.shape[:lead]
        if self.input_shape is not None:
            bad = bad or x.dim() != lead + len(self.input_shape) or tuple(x.shape[lead:]) != self.input_shape
        if bad:
            hint = " (use step_mode='m' for a whole sequence)" if lead == 1 and x.dim() > 1 + len(
                self.input_shape or ()) else ""
            raise ValueError(f"{type(self).__name__} in step_mode={self.step_mode!r} expects input {what}, "
                             f"got shape {tuple(x.shape)}{hint}")
        # here, so that bad data is reported as the model's input, not as some layer's input current
        if not is_all_finite(x):
            raise ValueError(f"{type(self).__name__} received a non-finite (NaN or Inf) input of shape "
                             f"{tuple(x.shape)}; check the data fed to the model")

    def _single_step_children(self) -> None:
        # SpikingJelly's functional.set_step_mode(net, "m") sets *every* StepModule, including
        # nodes inside a net that loops over T itself (snnTorch backend, PLIF baselines); such a
        # node would then read [B, ...] as [T, ...]. Where this net drives the steps, its
        # children run one step per call.
        if self._step_children is None:
            self._step_children = [m for m in self.modules() if m is not self and isinstance(m, base.StepModule)]
        for m in self._step_children:
            if m.step_mode != "s":
                m.step_mode = "s"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.step_mode == "m" and self.backend == "spikingjelly" and not self.loops_over_time:
            return self.forward_step(x)
        self._single_step_children()
        if self.step_mode == "s":
            return self.forward_step(x)
        return torch.stack([self.forward_step(x_t) for x_t in x])

    def reset(self) -> None:
        """Zero the state of every neuron in this net, whichever library built it.

        SpikingJelly's ``functional.reset_net`` calls this too, so it also resets the
        neurons it does not know itself (snnTorch's ``Leaky`` in the ``neuron="leaky"``
        baselines).

        >>> from spikingjelly.activation_based import functional
        >>> net = SpikingNet(nn.Sequential(nn.Linear(2, 3), make_neuron("leaky", 3)))
        >>> _ = net(torch.ones(1, 2)); functional.reset_net(net); net.layers[1].mem.abs().sum().item()
        0.0
        """
        StatefulModules(self).reset()

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, step_mode={self.step_mode!r}"


def _spiking(m: nn.Module) -> bool:
    return type(m).__name__ in ("LTC", "ALIF", "Leaky", "LTCNode", "ALIFNode", "ParametricLIFNode")


def _readout(m: nn.Module) -> bool:
    return type(m).__name__ in ("LI", "LINode")


def architecture(model: nn.Module) -> str:
    """The papers' layer notation read off ``model``'s modules, in order.

    ``ConvK{k}C{out}S{stride}P{pad}``, ``MPK{k}S{stride}``, ``{n}D`` (a Linear whose
    output goes to spiking neurons), ``{n}R`` (recurrent spiking), ``{n}I`` (a Linear
    feeding the leaky-integrator readout), ``Linear{n}`` (a plain linear readout),
    ``[a,b]`` for :class:`Branches`.

    Example:
        >>> architecture(nn.Sequential(nn.Linear(4, 8), make_neuron("alif", 8), nn.Linear(8, 3), make_readout(3)))
        '8D-3I'
    """
    from ..neurons.recurrent import RecurrentSpiking

    def walk(module: nn.Module) -> list[str]:
        out, pending = [], None
        for m in module.children():
            if isinstance(m, Branches):
                out.append("[" + ",".join(str(s) for s in m.sizes) + "]")
                out.append("[" + ",".join("-".join(walk(b)) for b in m.branches) + "]")
            elif isinstance(m, RecurrentSpiking):
                out.append(f"{m.fc.out_features}R")
            elif isinstance(m, nn.Conv2d):
                out.append(f"ConvK{m.kernel_size[0]}C{m.out_channels}S{m.stride[0]}P{m.padding[0]}")
            elif isinstance(m, nn.MaxPool2d):
                out.append(f"MPK{m.kernel_size}S{m.stride}")
            elif isinstance(m, nn.Linear):
                pending = m.out_features
            elif _spiking(m) and pending is not None:
                out.append(f"{pending}D")
                pending = None
            elif _readout(m) and pending is not None:
                out.append(f"{pending}I")
                pending = None
            elif not _spiking(m) and not _readout(m) and any(True for _ in m.children()):
                out += walk(m)
        if pending is not None:  # a plain Linear readout (no neuron after it)
            out.append(f"Linear{pending}")
        return out

    return "-".join(walk(model))
