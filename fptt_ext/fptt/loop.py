"""The online training loop: FPTT, FPTT-K, BPTT and TBPTT-k under one API.

:class:`SequenceTrainer` drives any stateful model over ``x`` of shape
``[T, B, ...]``. The sequence is cut into windows; inside a window the graph
flows through time, at each window's end there is one loss, one update, and
the recurrent state is detached:

============  ===============================  ==========================
``method``    windows                          regulariser
============  ===============================  ==========================
``"fptt"``    ``K`` windows (``K = T``: every   FPTT (:class:`FPTT`)
              step, memory independent of T)
``"bptt"``    one window of ``T`` steps         none
``"tbptt"``   windows of ``k`` steps            none
============  ===============================  ==========================

So ``method="fptt", K=1`` is BPTT with the FPTT regulariser, and
``method="tbptt", k=1`` is plain back-propagation at every step.

The model is called once per step as ``out = model(x_t)`` (state kept in the
modules: snnTorch ``init_hidden`` nets, SpikingJelly nodes, ``fptt_ext`` neurons),
or as ``out, state = model(x_t, state)`` with ``explicit_state=True`` (e.g. a
wrapped ``nn.LSTM``). A SpikingJelly network in multi-step mode gets each
window as one ``[L, B, ...]`` call.

Example:
    >>> import torch, fptt_ext
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), fptt_ext.LTC(init_hidden=True),
    ...                           torch.nn.Linear(8, 3), fptt_ext.LI(init_hidden=True))
    >>> _ = net(torch.zeros(1, 2))                      # build the lazily sized gates
    >>> trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 1e-3),
    ...                           loss="classification", num_classes=3)
    >>> result = trainer.train_batch(torch.rand(5, 4, 2), torch.tensor([0, 1, 2, 0]))
    >>> result.outputs.shape, result.updates
    (torch.Size([5, 4, 3]), 5)
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..floatmode import flush_subnormals
from .compiled import CompiledForward
from .losses import LOSSES, ClassificationLoss, PerStepLoss, RegressionEndLoss, check_class_labels, make_loss
from .optimizer import FPTT, all_finite
from .state import StatefulModules, detach_tree

__all__ = ["METHODS", "BatchResult", "SequenceTrainer", "window_ends"]

METHODS = ("fptt", "bptt", "tbptt")
NONFINITE = ("raise", "skip")


def _check_count(name: str, value, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "None or an int >= 1" if optional else "an int >= 1"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def window_ends(T: int, method: str, K: int | None = None, k: int = 1) -> list[int]:
    """1-based steps at which a window ends (and an update happens).

    >>> window_ends(6, "fptt"), window_ends(6, "fptt", K=2), window_ends(5, "tbptt", k=2), window_ends(4, "bptt")
    ([1, 2, 3, 4, 5, 6], [3, 6], [2, 4, 5], [4])
    """
    if method == "fptt":
        K = T if K is None else K
        if not 1 <= K <= T:
            raise ValueError(f"FPTT-K needs 1 <= K <= T, got K={K}, T={T}")
        return sorted({math.ceil(i * T / K) for i in range(1, K + 1)})
    if method == "bptt":
        return [T]
    if method == "tbptt":
        if k < 1:
            raise ValueError(f"TBPTT-k needs k >= 1, got k={k}")
        return sorted(set(range(k, T, k)) | {T})
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")


def is_multi_step(model: nn.Module) -> bool:
    """True if any module runs in SpikingJelly's multi-step mode (takes ``[T, B, ...]``)."""
    return any(getattr(m, "step_mode", "s") == "m" for m in model.modules())


def run_sequence(model, x: torch.Tensor, state=None, *, multi_step: bool = False,
                 explicit_state: bool = False):
    """Forward over ``x`` ``[L, B, ...]`` from the model's current state; returns the
    ``[L, B, ...]`` outputs and the user-held state (``None`` unless ``explicit_state``)."""
    if multi_step:
        return model(x), state
    outs = []
    for x_t in x:
        if explicit_state:
            out, state = model(x_t, state)
        else:
            out = model(x_t)
        outs.append(out)
    return torch.stack(outs), state


@dataclass
class BatchResult:
    """What :meth:`SequenceTrainer.train_batch` returns.

    Example:
        >>> r = BatchResult(loss=0.5, outputs=torch.zeros(3, 2, 1), updates=3)
        >>> r.loss, r.updates, r.skipped
        (0.5, 3, 0)
    """

    loss: float  # mean task loss over the updates
    outputs: torch.Tensor  # [T, B, ...] per-step predictions, detached
    updates: int
    skipped: int = 0  # updates skipped for a non-finite loss or gradient (nonfinite="skip")


class SequenceTrainer:
    """Train ``model`` online over sequences with FPTT, BPTT or TBPTT-k.

    Args:
        model: the network (may be wrapped in ``DistributedDataParallel``).
        optimizer: any ``torch.optim`` optimizer over the model's parameters, or
            an :class:`FPTT` (which then defines alpha, beta, variant).
        method: ``"fptt"``, ``"bptt"`` or ``"tbptt"``.
        K: number of FPTT windows (default ``T``); k: TBPTT window length.
        loss: ``"classification"`` (integer class labels ``[B]``), ``"per_step"`` (target
            ``[T, B, ...]``: class labels or float values), ``"regression_end"`` (float target
            ``[B, ...]``) or a loss module called as ``loss(out_t, y, t)`` with attribute
            ``per_step_target``. A loss given by name that depends on T (the classification
            loss and its running estimate ``Q``) is kept per sequence length, so batches of
            different lengths do not reset each other's ``Q``.
        num_classes: for the classification loss; the model must output this many scores.
        loss_options: keyword arguments for a loss given by name (e.g.
            ``{"divergence": "uniform"}``, see :class:`ClassificationLoss`).
        alpha, beta, variant, max_grad_norm, fused: FPTT settings when ``optimizer`` is a
            plain optimizer (``max_grad_norm`` also clips BPTT/TBPTT; ``fused=True`` compiles
            FPTT's updates, with Adam or Adamax the whole step, see :class:`FPTT`).
        compile: train through ``torch.compile(model)`` (:class:`~fptt_ext.fptt.compiled.CompiledForward`):
            each step's forward and backward become a few fused kernels, after some seconds of
            compilation in the first steps. :meth:`predict` runs the model uncompiled. Without a
            C++ compiler it warns and trains uncompiled.
        explicit_state: call ``model(x_t, state) -> (out, state)``.
        flush_denormal: train and predict with subnormal floats flushed to zero (default), as
            :func:`~fptt_ext.floatmode.flush_subnormals` does: on the calling thread, whose mode
            is restored after each call. Decaying membranes and the tails of sigmoid and
            surrogate derivatives can make them; on x86 CPUs each costs a microcode assist in
            every product it enters (on an Intel core, a TBPTT-1 step of the R-MNIST net that
            had some took 1.4x as long). Threads torch has already started keep their mode: with
            several threads, ``torch.set_flush_denormal(True)`` first thing in the script covers
            them all. ``False`` leaves the mode as it is.
        nonfinite: ``"raise"`` on a NaN/Inf loss (default) or ``"skip"`` the update
            with a warning; parameters and FPTT state are never corrupted.

    Bad input raises ``TypeError`` (a wrong type or dtype: float class labels, labels in a
    Python list) or ``ValueError`` (a wrong shape or value: a class index out of range, a
    model output that does not match ``num_classes`` or the target), saying what was
    expected and what was given; settings are checked when the trainer is built.

    Example:
        >>> import torch, fptt_ext
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), fptt_ext.LTC(init_hidden=True),
        ...                           torch.nn.Linear(8, 1), fptt_ext.LI(init_hidden=True))
        >>> _ = net(torch.zeros(1, 2))
        >>> trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 3e-3), method="fptt", K=3,
        ...                           loss="regression_end")
        >>> x, y = torch.rand(6, 4, 2), torch.rand(4)
        >>> trainer.train_batch(x, y).updates                      # FPTT-3: 3 windows of 2 steps
        3
        >>> trainer.predict(x).shape
        torch.Size([6, 4, 1])
    """

    def __init__(self, model: nn.Module, optimizer, *, method: str = "fptt", K: int | None = None, k: int = 1,
                 loss="classification", num_classes: int | None = None, alpha: float = 0.1, beta: float = 0.5,
                 variant: str = "practical", max_grad_norm: float | None = None, explicit_state: bool = False,
                 nonfinite: str = "raise", loss_options: dict | None = None, fused: bool = False,
                 compile: bool = False, flush_denormal: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
        if nonfinite not in NONFINITE:  # checked here too: only FPTT would check it otherwise
            raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        _check_count("K", K, optional=True)
        _check_count("k", k)
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES} or a loss module")
        elif not isinstance(loss, nn.Module):
            raise TypeError(f"loss must be one of {LOSSES} or a loss module, got {type(loss).__name__}")
        if loss == "classification":
            _check_count("num_classes", num_classes)
            if num_classes < 2:
                raise ValueError(f"loss='classification' needs num_classes >= 2, got {num_classes}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be None or > 0, got {max_grad_norm!r}")
        if not isinstance(optimizer, (torch.optim.Optimizer, FPTT)):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer (or an FPTT), got {type(optimizer).__name__}")
        self.model, self.method, self.K, self.k = model, method, K, k
        self.loss_kind, self.num_classes, self.loss_fn = loss, num_classes, None
        self._losses: dict[int, nn.Module] = {}  # losses given by name, one per sequence length
        self.loss_options = dict(loss_options or {})
        self.explicit_state, self.nonfinite, self.max_grad_norm = explicit_state, nonfinite, max_grad_norm
        if method == "fptt" and not isinstance(optimizer, FPTT):
            optimizer = FPTT([p for p in model.parameters() if p.requires_grad], optimizer, alpha=alpha, beta=beta,
                             variant=variant, max_grad_norm=max_grad_norm, nonfinite=nonfinite, fused=fused)
        if method != "fptt" and isinstance(optimizer, FPTT):
            raise ValueError(f"method={method!r} trains without the FPTT regulariser; pass the plain optimizer")
        self.optimizer = optimizer
        self.states = StatefulModules(model)
        if isinstance(model, nn.parallel.DistributedDataParallel) and getattr(model, "broadcast_buffers", False) \
                and any(n in m._buffers for m, h in self.states.items for n in h.names(m)):
            # DDP copies rank 0's buffers into every rank at each forward: that would overwrite
            # each rank's recurrent state (snnTorch-style neurons keep it in buffers).
            raise ValueError("the model keeps its recurrent state in buffers, which DistributedDataParallel "
                             "broadcasts from rank 0 at every forward; wrap it with "
                             "DistributedDataParallel(model, forward_sync_buffers=False) "
                             "(broadcast_buffers=False on torch < 2.13)")
        self._ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        self.multi_step = is_multi_step(model)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._forward = CompiledForward(model) if compile else model
        self.flush_denormal = flush_denormal

    @property
    def compiled(self) -> bool:
        """Whether training runs through ``torch.compile(model)`` (``compile=True`` and a C++ compiler)."""
        return isinstance(self._forward, CompiledForward) and self._forward.active

    # -- checks ---------------------------------------------------------------------------
    @staticmethod
    def _check_input(x: torch.Tensor) -> int:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"x must have shape [T, B, ...], got shape {tuple(x.shape)}")
        T = x.shape[0]
        if T == 0:
            raise ValueError("empty sequence: x has T = 0 time steps; expected [T >= 1, B, ...]")
        if x.shape[1] == 0:
            raise ValueError(f"empty batch: x has shape {tuple(x.shape)}; expected [T, B >= 1, ...]")
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point (the input current), got {x.dtype}; use x.float()")
        if not all_finite([x]):  # bad data, reported as such rather than at some layer inside the model
            raise ValueError(f"x holds NaN or Inf values (shape {tuple(x.shape)}); check the input data")
        return T

    def _check_targets(self, y, T: int, B: int) -> torch.Tensor:
        """``y`` checked against the loss (and class labels made ``torch.long``)."""
        if not isinstance(y, torch.Tensor):
            hint = "; convert it with torch.tensor(y)" if isinstance(y, (list, tuple)) else ""
            raise TypeError(f"targets y must be a torch.Tensor, got {type(y).__name__}{hint}")
        loss = self._loss(T)
        per_step = getattr(loss, "per_step_target", False)
        if per_step and (y.dim() < 2 or y.shape[0] != T):
            raise ValueError(f"per-step targets must have shape [T={T}, B={B}, ...], got {tuple(y.shape)}")
        if y.dim() <= per_step or y.shape[per_step] != B:
            expected = f"[T={T}, B={B}, ...]" if per_step else f"[B={B}, ...]"
            raise ValueError(f"batch size mismatch: x has B={B}, so targets must have shape {expected}, "
                             f"got {tuple(y.shape)}")
        if isinstance(loss, ClassificationLoss):
            if y.dim() != 1:
                raise ValueError(f"loss='classification' takes one class label per sequence, shape [B={B}], "
                                 f"got shape {tuple(y.shape)}")
            return check_class_labels(y, loss.num_classes)
        if isinstance(loss, RegressionEndLoss) and not y.is_floating_point():
            raise TypeError(f"regression targets must be floating point, got dtype {y.dtype}; use y.float()")
        if isinstance(loss, PerStepLoss) and loss.fn is None and not y.is_floating_point():
            return check_class_labels(y, self.num_classes)  # cross-entropy at every step
        return y

    def _check_outputs(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """The model's outputs ``[L, B, ...]`` of the first window against the loss: torch's own
        errors for these mismatches name neither the model nor the setting to change."""
        loss, shape = self.loss_fn, tuple(out.shape[1:])
        if isinstance(loss, ClassificationLoss):
            if len(shape) != 2 or shape[1] != loss.num_classes:
                raise ValueError(f"num_classes={loss.num_classes} does not match the model's output: it gives "
                                 f"shape {shape} per step, expected [B, {loss.num_classes}] class scores")
        elif isinstance(loss, RegressionEndLoss) and out[0].numel() != y.numel():
            raise ValueError(f"the regression target has shape {tuple(y.shape)}, but the model's output at each "
                             f"step has shape {shape}; expected one target value per output value")
        elif isinstance(loss, PerStepLoss) and loss.fn is None:
            if y.is_floating_point() and out[0].numel() != y[0].numel():
                raise ValueError(f"per-step targets of shape {tuple(y.shape[1:])} per step do not fit the model's "
                                 f"output of shape {shape} per step")
            if not y.is_floating_point():
                if len(shape) < 2 or tuple(y.shape[1:]) != shape[:1] + shape[2:]:
                    raise ValueError(f"per-step class labels of shape {tuple(y.shape[1:])} per step do not fit the "
                                     f"model's output of shape {shape} per step (class scores on dim 1)")
                check_class_labels(y, shape[1])

    def _loss(self, T: int) -> nn.Module:
        if not isinstance(self.loss_kind, str):
            self.loss_fn = self.loss_kind
        else:
            if T not in self._losses:
                self._losses[T] = make_loss(self.loss_kind, T, self.num_classes, **self.loss_options)
            self.loss_fn = self._losses[T]
        return self.loss_fn

    # -- stepping -------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, state, model=None):
        return run_sequence(self._forward if model is None else model, x, state, multi_step=self.multi_step,
                            explicit_state=self.explicit_state)

    def _window_loss(self, out: torch.Tensor, y, start: int, end: int) -> torch.Tensor:
        loss_fn = self.loss_fn
        if getattr(loss_fn, "per_step_target", False):
            return torch.stack([loss_fn(out[i], y[start + i], start + i + 1) for i in range(end - start)]).mean()
        return loss_fn(out[-1], y, end)

    def _update_loss_state(self, out: torch.Tensor, y, start: int, end: int) -> None:
        if not getattr(self.loss_fn, "per_step_target", False):
            self.loss_fn.update(out[-1].detach(), y, end)

    def _float_mode(self):
        return flush_subnormals() if self.flush_denormal else contextlib.nullcontext()

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """Reset the state, run the whole sequence with one update per window."""
        with self._float_mode():
            return self._train_batch(x, y)

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        T = self._check_input(x)
        y = self._check_targets(y, T, x.shape[1])
        self.model.train()
        self.states.reset()
        state = None
        # Outputs and losses go into buffers allocated once per sequence: T small tensors kept
        # alive in a list (then concatenated) made FPTT's memory grow with T (heap fragmentation
        # plus the copy; 19.4 -> 23.3 MiB from T = 20 to 1000 on the R-MNIST net, batch 16).
        ends = window_ends(T, self.method, self.K, self.k)
        outputs, losses, n_losses, skipped, start = None, None, 0, 0, 0
        exact = self.method == "fptt" and self.optimizer.variant == "exact"
        for end in ends:
            if exact:
                snapshot, rng = (self.states.get(), state), torch.get_rng_state()
            out, new_state = self._run(x[start:end], state)
            if start == 0:
                self._check_outputs(out, y)
            loss = self._window_loss(out, y, start, end)
            if not torch.isfinite(loss):
                skipped += self._nonfinite(f"loss at step {end}")
            else:
                closure = self._replay(x[start:end], y, start, end, snapshot, rng) if exact else None
                try:  # gradients never outlive the update, even when it raises
                    if self.method == "fptt" and self._ddp:
                        # Under DDP every parameter must take part in the backward that DDP
                        # all-reduces (a recurrent weight unused at a sequence's first step
                        # would stall its reducer), so R stays on the graph there.
                        (loss + self.optimizer.regularizer()).backward()
                    else:
                        # R's gradient is closed-form: FPTT adds it in its step (with_regularizer),
                        # which gives the gradient of loss + R (up to rounding) without R's graph.
                        loss.backward()
                    stepped = self._step(closure, end, with_regularizer=not self._ddp)
                finally:
                    self.optimizer.zero_grad(set_to_none=True)
                if stepped:
                    self._update_loss_state(out, y, start, end)
                    if losses is None:
                        losses = loss.new_empty(len(ends))
                    losses[n_losses] = loss.detach()
                    n_losses += 1
                else:
                    skipped += 1
            if outputs is None:
                outputs = out.new_empty((T, *out.shape[1:]))
            outputs[start:end] = out.detach()
            self.states.detach()
            state = detach_tree(new_state)
            start = end
        mean = losses[:n_losses].mean().item() if n_losses else float("nan")
        return BatchResult(mean, outputs, n_losses, skipped)

    def _step(self, closure, end: int, with_regularizer: bool = False) -> bool:
        """One optimizer update; False if it was skipped for a non-finite gradient."""
        if self.method == "fptt":  # FPTT checks the gradients itself, with the same policy
            before = self.optimizer.skipped_steps
            self.optimizer.step(closure, with_regularizer=with_regularizer)
            return self.optimizer.skipped_steps == before
        grads = [p.grad for p in self._params if p.grad is not None]
        if self.max_grad_norm is None:
            finite = all_finite(grads)
        else:  # the norm clipping needs is the finiteness check too: one pass over the gradients
            total = torch.nn.utils.get_total_norm(grads, foreach=True)
            finite = bool(torch.isfinite(total)) or all_finite(grads)
        if not finite:
            self._nonfinite(f"gradient at step {end}")
            return False
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(self._params, self.max_grad_norm, total, foreach=True)
        self.optimizer.step()
        return True

    def _replay(self, x_win, y, start, end, snapshot, rng):
        """Closure for FPTT "exact": the window's task loss at the updated weights,
        from the same pre-window state and random numbers. Afterwards the module-held
        state is put back to this window's forward, so the next window continues from it
        (as user-held state does)."""
        module_states, state = snapshot

        def closure():
            after_forward = self.states.get()
            self.states.set(module_states)
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(rng)
                out, _ = self._run(x_win, state)
            self.states.set(after_forward)
            return self._window_loss(out, y, start, end)

        return closure

    def _nonfinite(self, what: str) -> int:
        msg = f"non-finite (NaN/Inf) {what}; the update is skipped and the weights and FPTT state are unchanged"
        if self.nonfinite == "raise":
            raise FloatingPointError(msg + "; lower the learning rate or set max_grad_norm (nonfinite='skip' skips)")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return 1

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs ``[T, B, ...]`` in eval mode, without building any graph."""
        self._check_input(x)
        self.model.eval()
        self.states.reset()
        with self._float_mode():
            out, _ = self._run(x, None, self.model)  # uncompiled: eval mode without graph would compile anew
        return out

    def state_dict(self) -> dict:
        """The optimizer's state and the loss's (``loss``: the last sequence length's;
        ``losses``: every length's, for losses given by name)."""
        sd = {"optimizer": self.optimizer.state_dict()}
        if self.loss_fn is not None:
            sd["loss"] = self.loss_fn.state_dict()
        if self._losses:
            sd["losses"] = {T: fn.state_dict() for T, fn in self._losses.items()}
        return sd

    def load_state_dict(self, sd: dict, T: int | None = None) -> None:
        """Load :meth:`state_dict`; ``T`` is the length ``sd["loss"]`` belongs to (read off the
        classification loss's ``Q`` when not given)."""
        self.optimizer.load_state_dict(sd["optimizer"])
        for length, loss_sd in sd.get("losses", {}).items():
            self._loss(int(length)).load_state_dict(loss_sd)
        if "loss" in sd:
            if T is None and sd["loss"]:
                T = next(iter(sd["loss"].values())).shape[0]
            if T is not None or not isinstance(self.loss_kind, str):
                self._loss(T).load_state_dict(sd["loss"])
