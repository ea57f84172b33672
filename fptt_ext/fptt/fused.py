"""The FPTT updates as one compiled kernel per parameter (``FPTT(..., fused=True)``).

The foreach path (:class:`~fptt_ext.fptt.FPTT`'s default) needs eight in-place passes over
the parameters per step: four for the regulariser's gradient, four for the ``lam`` and
``W_bar`` update. Each pass is memory bound, so what costs is the traffic, not the
arithmetic. ``torch.compile`` turns each update into a single loop per tensor that reads
every operand once and writes each result once:

* regulariser gradient: ``grad += alpha (W - W_bar) - c trace`` (read 4, write 1 instead of
  read 7, write 4);
* practical update: ``lam -= alpha (W - W_bar)``; ``W_bar <- lerp(W_bar, W, beta) -
  (beta / alpha) lam`` (read 3, write 2 instead of read 8, write 4).

``W - W_bar`` is still formed first, so the regulariser's gradient is exactly zero where
``W == W_bar`` and ``lam == 0``. Compiling needs a C++ compiler (inductor's CPU backend) and
takes a few seconds per model, once per process; without a compiler :func:`fused_updates`
returns ``None`` and FPTT keeps the foreach kernels.

Where the wrapped optimizer is ``torch.optim.Adam`` or ``Adamax`` (:class:`FusedStep`), the
whole practical step is one kernel per parameter: regulariser gradient, (clipping,) the
optimizer's update and the ``lam``/``W_bar`` update read every operand once (read 6, write 5,
against read 11, write 6 for the three separate kernels, since the gradient of ``loss + R``
is never written out). The optimizer's state stays its own (``exp_avg``, ``step`` ...), so its
``state_dict``, LR schedulers and a later unfused step all see the usual state.

Example:
    >>> kernels = fused_updates()
    >>> kernels is None or {"practical_update", "regularizer_grad", "adam", "adamax"} <= set(kernels)
    True
"""
from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["FusedStep", "compiler_available", "fused_updates"]


def _regularizer_grad(grads, params, w_bar, trace, alpha: float, c: float):
    for g, p, w, t in zip(grads, params, w_bar, trace):
        g.add_((p - w) * alpha - t * c)


def _lam_w_bar_update(p, w, m, alpha: float, beta: float):
    m.sub_((p - w) * alpha)
    w.lerp_(p, beta).sub_(m * (beta / alpha))


def _practical_update(params, w_bar, lam, alpha: float, beta: float):
    for p, w, m in zip(params, w_bar, lam):
        _lam_w_bar_update(p, w, m, alpha, beta)


def _step_grad(p, g, w, m, alpha: float, scale, weight_decay: float):
    # the gradient of loss + R, scaled for clipping, plus L2 weight decay as torch.optim adds it
    g = (g + ((p - w) * alpha - m)) * scale
    return g + p * weight_decay if weight_decay else g


def _adam_update(params, grads, w_bar, lam, exp_avg, exp_avg_sq, coef, beta1: float, beta2: float, eps: float,
                 weight_decay: float, alpha: float, beta: float):
    # coef[i] = (lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), clip scale), computed on the host:
    # a power of the step count inside the loop is recomputed for every vector of elements.
    for i, (p, g, w, m, ea, sq) in enumerate(zip(params, grads, w_bar, lam, exp_avg, exp_avg_sq)):
        g = _step_grad(p, g, w, m, alpha, coef[i, 2], weight_decay)
        ea.lerp_(g, 1 - beta1)
        sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.sub_(coef[i, 0] * ea / (sq.sqrt() * coef[i, 1] + eps))
        _lam_w_bar_update(p, w, m, alpha, beta)


def _adamax_update(params, grads, w_bar, lam, exp_avg, exp_inf, coef, beta1: float, beta2: float, eps: float,
                   weight_decay: float, alpha: float, beta: float):
    for i, (p, g, w, m, ea, inf) in enumerate(zip(params, grads, w_bar, lam, exp_avg, exp_inf)):
        g = _step_grad(p, g, w, m, alpha, coef[i, 2], weight_decay)
        ea.lerp_(g, 1 - beta1)
        inf.copy_(torch.maximum(inf * beta2, g.abs() + eps))
        p.sub_(coef[i, 0] * ea / inf)
        _lam_w_bar_update(p, w, m, alpha, beta)


def _regularized_grad_norm(params, grads, w_bar, lam, alpha: float):
    # the 2-norm of the gradient of loss + R, which clipping needs, without writing that gradient
    return torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(g + ((p - w) * alpha - m)) for p, g, w, m in zip(params, grads, w_bar, lam)]))


def compiler_available() -> bool:
    """True if inductor finds the C++ compiler it needs to build CPU kernels.

    >>> isinstance(compiler_available(), bool)
    True
    """
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
        return True
    except Exception:  # noqa: BLE001 (inductor raises its own InvalidCxxCompiler, or fails to import)
        return False


@functools.cache
def _compiled():
    # fullgraph: a graph break would silently run the per-tensor Python loops eagerly.
    # dynamic=False: the lists and shapes of one model never change, so specialise on them.
    opts = {"fullgraph": True, "dynamic": False}
    return {"regularizer_grad": torch.compile(_regularizer_grad, **opts),
            "practical_update": torch.compile(_practical_update, **opts),
            "adam": torch.compile(_adam_update, **opts), "adamax": torch.compile(_adamax_update, **opts),
            "regularized_grad_norm": torch.compile(_regularized_grad_norm, **opts)}


def fused_updates():
    """The compiled update kernels ``{"regularizer_grad", "practical_update"}``, or ``None``
    (with a warning) where no C++ compiler is available. Compilation happens at the first call.

    >>> import torch
    >>> kernels = fused_updates()
    >>> update = kernels["practical_update"] if kernels else _practical_update  # (what it compiles)
    >>> w, w_bar, lam = torch.ones(3), torch.zeros(3), torch.zeros(3)
    >>> update([w], [w_bar], [lam], 0.1, 0.5)  # lam -= alpha (W - W_bar); W_bar <- lerp(W_bar, W, beta) - beta/alpha lam
    >>> lam.tolist(), w_bar.tolist()
    ([-0.10000000149011612, -0.10000000149011612, -0.10000000149011612], [1.0, 1.0, 1.0])
    """
    if not compiler_available():
        warnings.warn("FPTT(fused=True) needs a C++ compiler for torch.compile (inductor found "
                      "none; install g++ or set CXX); using the foreach kernels instead.",
                      RuntimeWarning, stacklevel=3)
        return None
    return _compiled()


_EAGER = {"adam": _adam_update, "adamax": _adamax_update}
# the optimizer's second state tensor, by the optimizer's exact type (a subclass may step differently)
_SECOND_STATE = {torch.optim.Adam: "exp_avg_sq", torch.optim.Adamax: "exp_inf"}
_UNSUPPORTED_OPTIONS = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")


class FusedStep:
    """FPTT's practical step as one compiled kernel per parameter, for Adam and Adamax.

    The kernel adds the regulariser's gradient ``alpha (W - W_bar) - lam`` to the task gradient
    in registers (optionally scaled for clipping), takes the optimizer's step on it and
    updates ``lam`` and ``W_bar``, in one pass over memory. It updates the optimizer's own
    state tensors and step counts, with its current ``lr``, ``betas``, ``eps`` and (L2)
    ``weight_decay``. :meth:`ready` says when it can run: the optimizer is exactly ``Adam`` or
    ``Adamax`` without ``amsgrad``, ``maximize``, ``capturable``, ``differentiable`` or
    decoupled weight decay, over real parameters, and its state exists (torch creates it at
    the first step, which therefore runs unfused).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> adam = torch.optim.Adam([w], lr=0.1)
        >>> kernels = fused_updates()
        >>> step = FusedStep(adam, kernels) if kernels else None
        >>> step is None or not step.ready([w])            # Adam's state comes with its first step
        True
        >>> w.grad = torch.ones(3); adam.step()
        >>> step is None or step.ready([w])
        True
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kernels: dict):
        self.optimizer, self.kernels = optimizer, kernels
        # parameter id -> the index of its optimizer group (the FPTT and optimizer groups may
        # differ); an index, not the group: Optimizer.load_state_dict replaces the group dicts
        self._group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}

    def ready(self, params) -> bool:
        """Whether :meth:`run` can step ``params`` now."""
        second = _SECOND_STATE.get(type(self.optimizer))
        if second is None:
            return False
        for g in self.optimizer.param_groups:
            if any(g.get(k) for k in _UNSUPPORTED_OPTIONS) or any(torch.is_tensor(v) for v in (*g["betas"], g["eps"])):
                return False
        state = self.optimizer.state
        return all(id(p) in self._group_of and second in state.get(p, ()) and not p.is_complex() for p in params)

    @torch.no_grad()
    def grad_norm(self, segments) -> torch.Tensor:
        """The 2-norm of the task plus regulariser gradient over ``segments`` (see :meth:`run`)."""
        norms = [self.kernels["regularized_grad_norm"](ps, [p.grad for p in ps], w_bar, lam, alpha)
                 for ps, w_bar, lam, alpha, _ in segments]
        return torch.linalg.vector_norm(torch.stack(norms))

    @torch.no_grad()
    def run(self, segments, clip_scale: float = 1.0) -> Exception | None:
        """Step every ``(params, W_bar, lam, alpha, beta)`` segment (one FPTT group each; every
        parameter with a ``.grad``), its gradients scaled by ``clip_scale`` first.

        The kernel is compiled for each optimizer group at its first step. If that fails for the
        first group, nothing is written and the error is raised; if it fails for a later one,
        when earlier groups are already stepped, this step is finished with the same math run
        eagerly and the error is returned (the caller then stops using the fused step)."""
        kind = "adam" if type(self.optimizer) is torch.optim.Adam else "adamax"
        second_key = _SECOND_STATE[type(self.optimizer)]
        state = self.optimizer.state
        kernel, failure, stepped = self.kernels[kind], None, False
        for ps, w_bar, lam, alpha, beta in segments:
            for group, idx in self._by_optimizer_group(ps):
                sub = [ps[i] for i in idx]
                st = [state[p] for p in sub]
                steps = [s["step"] for s in st]
                lr, (b1, b2) = float(group["lr"]), group["betas"]
                # float32 at least: bf16 / fp16 weights still get torch.optim's float32 step size
                coef = torch.tensor([(lr / (1 - b1 ** t), (1 - b2 ** t) ** -0.5, clip_scale)
                                     for t in (torch.stack(steps) + 1).tolist()],
                                    dtype=torch.promote_types(sub[0].dtype, torch.float32))
                args = (sub, [p.grad for p in sub], [w_bar[i] for i in idx], [lam[i] for i in idx],
                        [s["exp_avg"] for s in st], [s[second_key] for s in st], coef,
                        b1, b2, group["eps"], group["weight_decay"], alpha, beta)
                try:
                    kernel(*args)
                except torch._dynamo.exc.BackendCompilerFailed as e:
                    if not stepped:
                        raise
                    kernel, failure = _EAGER[kind], e
                    kernel(*args)
                torch._foreach_add_(steps, 1)  # after the kernel: a failed compilation leaves the state as it was
                stepped = True
        return failure

    def _by_optimizer_group(self, ps):
        groups = {}
        for i, p in enumerate(ps):
            groups.setdefault(self._group_of[id(p)], []).append(i)
        return [(self.optimizer.param_groups[g], idx) for g, idx in groups.items()]
