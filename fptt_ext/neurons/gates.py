"""Gates that produce the pre-sigmoid time constants of the neurons.

Every gate is a module called as ``gate(cur, state) -> logits``:

* :class:`DenseGate` - ``Linear(2N -> N)`` on ``[I_t, state]`` (LTC-SN, dense form);
* :class:`ConvGate` - ``BN(Conv3x3(I_t + state))``, C -> C, shape preserving (conv form);
* :class:`ConstantGate` - a learned constant per neuron (per channel for conv
  layers), which turns LTC-SN into ALIF.

:class:`DenseGate` also splits into ``precompute(cur_seq)`` and ``from_precomputed(pre_t, state)``:
its input share is linear in the input, so when a whole window ``[T, B, ...]`` is known
(SpikingJelly's multi-step mode) it is computed for all T steps in one large matrix
product, and each step adds only the state's share
(:func:`fptt_ext.neurons.functional.ltc_multi_step`). The other gates are called step by
step: a conv gate convolves the sum (splitting it would double its work), a constant gate
has nothing to precompute.

:class:`GatedNeuron` holds the bookkeeping both adapters share: building the
gates (eagerly from ``size=`` or lazily from the first input), input checks,
and the ``beta`` initialisation.

Example:
    >>> import torch
    >>> gate = DenseGate(3)
    >>> gate(torch.zeros(2, 3), torch.zeros(2, 3)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .fused import once_differentiable_backward

__all__ = ["ConstantGate", "ConvGate", "DenseGate", "GatedNeuron", "is_all_finite", "logit"]


def logit(p: float) -> float:
    """The inverse of the sigmoid, ``log(p / (1 - p))``: the gate logit of a decay ``p``.

    >>> round(logit(0.5), 6), round(logit(0.9), 4)
    (0.0, 2.1972)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"expected a decay strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


def _concat_linear(cur: torch.Tensor, state: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    # DenseGate's forward, ``(x, x W^T + bias)`` with ``x = [cur, state]``, which its backward needs
    x = torch.cat((cur, state), dim=-1)
    return x, torch.addmm(bias, x, weight.t())


def _add_mm(acc: torch.Tensor | None, grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # acc + grad @ weight in one addmm (grad @ weight where there is nothing to add to)
    return grad.mm(weight) if acc is None else torch.addmm(acc, grad, weight)


def _param_grads(grad: torch.Tensor | None, x: torch.Tensor | None, need_weight: bool, need_bias: bool):
    # a Linear's weight and bias gradients, as autograd forms them
    if grad is None:
        return None, None
    return grad.t().mm(x) if need_weight else None, grad.sum(0) if need_bias else None


class _ConcatLinear(torch.autograd.Function):
    # [cur, state] W^T + bias for a state without a graph (FPTT with K = 1, TBPTT-1, the
    # first step of every window): the same forward as Linear on the concatenation, but the
    # backward forms only the input gradient of ``cur``, (g W[:, :n]), where autograd would
    # multiply g by all of W and drop the state's half: one [B, N] x [N, N] product per gate
    # and step less, and no gradient to split.

    @staticmethod
    def forward(ctx, cur, state, weight, bias):
        x, out = _concat_linear(cur, state, weight, bias)
        ctx.n = cur.shape[-1]
        ctx.save_for_backward(x if ctx.needs_input_grad[2] else None,
                              weight if ctx.needs_input_grad[0] or ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    @once_differentiable_backward
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (grad.mm(weight[:, :ctx.n]) if need[0] else None, grad.mm(weight[:, ctx.n:]) if need[1] else None,
                *_param_grads(grad, x, need[2], need[3]))


# The product _ConcatLinear saves, B x N x N multiply-adds, against the cost of a Python
# autograd node: below about 2^20 the node costs more than the product (measured: even at
# B = 16, N = 256 and B = 64, N = 128; 26-28 us saved per gate and step at B = 32, N = 256
# and B = N = 128).
_MIN_SAVED_MACS = 1 << 21


def _state_without_graph(cur: torch.Tensor, state: torch.Tensor, bias) -> bool:
    # where _ConcatLinear saves a product worth its node: a 2-D step whose state needs no
    # gradient, in a graph being recorded. Not under autocast (which casts nn.Linear's
    # operands, not a Function's).
    return (torch.is_grad_enabled() and not state.requires_grad and cur.dim() == 2 and bias is not None
            and cur.shape[0] * cur.shape[1] * state.shape[1] >= _MIN_SAVED_MACS
            and not torch.is_autocast_enabled(cur.device.type))


class DenseGate(nn.Linear):
    """``Linear(2N -> N)`` applied to ``[cur, state]``; ``weight`` is ``(N, 2N)``.

    Where the state carries no graph (it was detached: FPTT with K = 1, TBPTT-1), the backward
    skips the state's share of the input gradient, which nothing would use.

    Example:
        >>> import torch
        >>> gate = DenseGate(4)
        >>> gate.weight.shape, gate(torch.zeros(2, 4), torch.zeros(2, 4)).shape
        (torch.Size([4, 8]), torch.Size([2, 4]))
    """

    def __init__(self, n: int, **factory):
        super().__init__(2 * n, n, **factory)

    def forward(self, cur: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if _state_without_graph(cur, state, self.bias):
            return _ConcatLinear.apply(cur, state, self.weight, self.bias)
        return super().forward(torch.cat((cur, state), dim=-1))

    def precompute(self, cur_seq: torch.Tensor) -> torch.Tensor:
        """``W_cur @ I_t + bias`` for every step of ``cur_seq`` ``[T, B, N]``, in one product.

        >>> import torch
        >>> gate, cur, state = DenseGate(3), torch.rand(4, 2, 3), torch.rand(2, 3)
        >>> torch.allclose(gate.from_precomputed(gate.precompute(cur)[1], state), gate(cur[1], state))
        True
        """
        return nn.functional.linear(cur_seq, self.weight[:, :self.out_features], self.bias)

    def from_precomputed(self, pre_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The logits of one step: its precomputed input share plus ``W_state @ state``."""
        return torch.addmm(pre_t, state, self.weight[:, self.out_features:].t())

    def init_logit(self, value: float) -> None:
        nn.init.constant_(self.bias, value)


class ConvGate(nn.Module):
    """``BN(Conv(cur + state))`` with a C -> C 3x3 convolution, padding 1.

    Example:
        >>> import torch
        >>> gate = ConvGate(3)
        >>> gate(torch.rand(2, 3, 5, 5), torch.zeros(2, 3, 5, 5)).shape
        torch.Size([2, 3, 5, 5])
    """

    def __init__(self, channels: int, **factory):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False, **factory)
        self.bn = nn.BatchNorm2d(channels, **factory)

    def forward(self, cur: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(cur + state))

    def init_logit(self, value: float) -> None:
        nn.init.constant_(self.bn.bias, value)


class ConstantGate(nn.Module):
    """A learned constant logit ``p`` of the given shape; ignores its inputs.

    Example:
        >>> import torch
        >>> gate = ConstantGate((3,), value=2.0)
        >>> gate(torch.rand(5, 3), torch.rand(5, 3)).tolist()      # the inputs are ignored
        [2.0, 2.0, 2.0]
    """

    def __init__(self, shape: tuple[int, ...], value: float = 0.0, **factory):
        super().__init__()
        self.p = nn.Parameter(torch.full(shape, float(value), **factory))

    def forward(self, cur: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.p

    def init_logit(self, value: float) -> None:
        nn.init.constant_(self.p, value)


# Initial decays of constant gates: tau_m = 20 and tau_adp = 200 steps, the
# ASRNN initialisation of Yin et al. (2021).
DEFAULT_DECAY = {"gate_m": math.exp(-1 / 20), "gate_adp": math.exp(-1 / 200)}
# The constructor argument that sets each gate's initial decay, for messages.
DECAY_ARGUMENT = {"gate_m": "beta (the initial membrane decay)", "gate_adp": "adaptation_decay (the initial rho)"}


class GatedNeuron:
    """Mixin: owns the gates ``gate_m`` (and ``gate_adp``) of a neuron module.

    ``decays`` maps each gate name to the initial decay it should produce
    (membrane: ``1 - alpha``; adaptation: ``rho``), or ``None`` for the
    framework's default initialisation of a liquid gate.

    Example:
        >>> import torch, fptt_ext
        >>> ltc = fptt_ext.LTC()                         # an LTC is a GatedNeuron
        >>> isinstance(ltc, GatedNeuron), ltc.size, ltc.gate_m
        (True, None, None)
        >>> _ = ltc(torch.zeros(1, 5)); ltc.size, type(ltc.gate_m).__name__
        (5, 'DenseGate')
    """

    def _setup_gates(self, size, conv, liquid: dict, decays: dict, trainable: dict) -> None:
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"size must be a positive int (number of neurons or channels), got {size!r}")
        for name, decay in decays.items():
            # checked here, as given: the membrane gate is set from 1 - beta, which a message would show instead
            if decay is not None and not (isinstance(decay, (int, float)) and 0.0 < decay < 1.0):
                raise ValueError(f"{type(self).__name__}: {DECAY_ARGUMENT[name]} must be a number strictly between "
                                 f"0 and 1 (or None), got {decay!r}")
        if conv is not None and size is None:
            raise ValueError("conv= needs size= too; leave both unset to infer them from the first input")
        self._gate_cfg = {"liquid": liquid, "decays": decays, "trainable": trainable}
        self.size, self.conv = size, conv
        for name in liquid:
            setattr(self, name, None)
        if size is not None:
            self._build_gates(size, bool(conv), {})

    def _build_gates(self, size: int, conv: bool, factory: dict) -> None:
        cfg = self._gate_cfg
        for name, liquid in cfg["liquid"].items():
            if liquid:
                gate = ConvGate(size, **factory) if conv else DenseGate(size, **factory)
            else:
                gate = ConstantGate((size, 1, 1) if conv else (size,), **factory)
            decay = cfg["decays"][name]
            if decay is None and not liquid:
                decay = DEFAULT_DECAY[name]
            if decay is not None:
                # the membrane gate gives the update rate alpha = 1 - decay
                gate.init_logit(logit(1.0 - decay) if name == "gate_m" else logit(decay))
            gate.requires_grad_(cfg["trainable"][name])
            setattr(self, name, gate)
        self.size, self.conv = size, conv

    def _check_input(self, x: torch.Tensor, values: torch.Tensor | None = None) -> None:
        """Validate ``x`` of shape ``(B, N)`` or ``(B, C, H, W)``; build gates on first use.

        ``values`` (default ``x``) is what is checked for NaN/Inf: the whole
        ``[T, B, ...]`` sequence in multi-step mode."""
        who = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{who} expects a torch.Tensor input current, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{who} expects a floating-point input current (float32/float64), got dtype {x.dtype}; "
                "convert it with x.float()"
            )
        if x.dim() not in (2, 4):
            raise ValueError(
                f"{who} expects input of shape (batch, neurons) or (batch, channels, height, width), "
                f"got shape {tuple(x.shape)}"
            )
        conv = x.dim() == 4
        if x.shape[1] == 0:
            raise ValueError(f"{who} expects at least one neuron (or channel) on dim 1, got shape {tuple(x.shape)}")
        if self.size is None:
            self._build_gates(x.shape[1], conv, {"dtype": x.dtype, "device": x.device})
        elif x.shape[1] != self.size or conv != self.conv:
            expected = f"(batch, {self.size}, H, W)" if self.conv else f"(batch, {self.size})"
            raise ValueError(
                f"{who} was built for input of shape {expected} (from its size or first call), "
                f"got shape {tuple(x.shape)}; use one neuron module per layer"
            )
        dtype = next(self.gate_m.parameters()).dtype
        # under autocast the gates cast their input themselves; otherwise torch's own error
        # ("mat1 and mat2 must have the same dtype") would name neither the module nor the fix
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"{who} has {dtype} gates, got a {x.dtype} input current; convert the input "
                            f"(x.to({dtype})) or the network (net.to({x.dtype}))")
        values = x if values is None else values
        if not is_all_finite(values):
            raise ValueError(f"{who} received a non-finite (NaN or Inf) input current of shape {tuple(values.shape)}")

    def _check_sequence(self, x_seq) -> None:
        """Validate a multi-step input ``[T, B, N]`` or ``[T, B, C, H, W]`` (SpikingJelly's ``"m"``)."""
        who = type(self).__name__
        if not isinstance(x_seq, torch.Tensor):
            raise TypeError(f"{who} expects a torch.Tensor input current, got {type(x_seq).__name__}")
        if x_seq.dim() not in (3, 5) or x_seq.shape[0] == 0:
            hint = "; for one step [batch, ...] use step_mode='s'" if x_seq.dim() in (2, 4) else ""
            raise ValueError(f"{who} in multi-step mode expects input of shape (T, batch, neurons) or "
                             f"(T, batch, channels, height, width) with T >= 1, got shape {tuple(x_seq.shape)}{hint}")
        self._check_input(x_seq[0], x_seq)


def is_all_finite(values: torch.Tensor) -> bool:
    """True if ``values`` holds no NaN/Inf; cheap when it does not (the usual case).

    While ``torch.compile`` traces it is ``True`` without looking: the check is then made once per
    batch by whoever feeds the compiled model (:class:`fptt_ext.SequenceTrainer` does).

    Example:
        >>> is_all_finite(torch.ones(3)), is_all_finite(torch.tensor([1.0, float("inf")]))
        (True, False)
        >>> is_all_finite(torch.full((2,), 3e38))            # the sum overflows, the values are finite
        True
    """
    if torch.compiler.is_compiling():
        # Under torch.compile the branch on the data would end the graph at every layer (a host
        # sync per call); there the trainer checks each batch's input once instead.
        return True
    # detached: the check must not add autograd nodes (isfinite's abs() recorded one per
    # call, saving the input for a backward that never comes).
    values = values.detach()
    # A finite sum proves every entry finite (NaN/Inf propagate) in one cheap reduction;
    # only a non-finite sum (NaN/Inf, or an overflow of huge finite values) needs the
    # elementwise check. isfinite().all() on every call cost ~2.5% of an R-MNIST FPTT step;
    # the sum's isfinite as a tensor op (with its scalar copies) ~10 us a call, math.isfinite 3-6 us.
    return math.isfinite(values.sum().item()) or bool(torch.isfinite(values).all())
