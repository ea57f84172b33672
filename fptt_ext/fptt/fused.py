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


def _adam_update(params, grads, w_bar, lam, exp_avg, exp_avg_sq, steps, coef, beta1: float, beta2: float,
                 eps: float, weight_decay: float, alpha: float, beta: float):
    # coef[i] = (lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), clip scale), computed on the host:
    # a power of the step count inside the loop is recomputed for every vector of elements.
    # The step counts are incremented here too: as a foreach op on the host, 16 scalars took 66 us.
    for i, (p, g, w, m, ea, sq, t) in enumerate(zip(params, grads, w_bar, lam, exp_avg, exp_avg_sq, steps)):
        g = _step_grad(p, g, w, m, alpha, coef[i, 2], weight_decay)
        ea.lerp_(g, 1 - beta1)
        sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.sub_(coef[i, 0] * ea / (sq.sqrt() * coef[i, 1] + eps))
        _lam_w_bar_update(p, w, m, alpha, beta)
        t.add_(1)


def _adamax_update(params, grads, w_bar, lam, exp_avg, exp_inf, steps, coef, beta1: float, beta2: float,
                   eps: float, weight_decay: float, alpha: float, beta: float):
    for i, (p, g, w, m, ea, inf, t) in enumerate(zip(params, grads, w_bar, lam, exp_avg, exp_inf, steps)):
        g = _step_grad(p, g, w, m, alpha, coef[i, 2], weight_decay)
        ea.lerp_(g, 1 - beta1)
        inf.copy_(torch.maximum(inf * beta2, g.abs() + eps))
        p.sub_(coef[i, 0] * ea / inf)
        _lam_w_bar_update(p, w, m, alpha, beta)
        t.add_(1)


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
    ``weight_decay``. It applies where the optimizer is exactly ``Adam`` or ``Adamax``
    without ``amsgrad``, ``maximize``, ``capturable``, ``differentiable`` or decoupled weight
    decay, over real parameters, once the optimizer's state exists (torch creates it at the
    first step, which therefore runs unfused).

    :meth:`plan` partitions FPTT's groups by optimizer group once; every step then only
    gathers the current gradients and state (:meth:`gather`) and runs the kernels (:meth:`run`).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> adam = torch.optim.Adam([w], lr=0.1)
        >>> step = FusedStep(adam, fused_updates() or {})
        >>> group = {"alpha": 0.1, "beta": 0.5}
        >>> plan = step.plan([(group, [w], [w.detach().clone()], [torch.zeros(3)])])
        >>> step.gather(plan) is None                      # Adam's state comes with its first step
        True
        >>> w.grad = torch.ones(3); adam.step()
        >>> len(step.gather(plan))                         # one optimizer group
        1
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kernels: dict):
        self.optimizer, self.kernels = optimizer, kernels
        self._second = _SECOND_STATE.get(type(optimizer))
        self._kind = {"exp_avg_sq": "adam", "exp_inf": "adamax"}.get(self._second)

    def plan(self, cache):
        """For FPTT's ``(group, params, W_bar, lam)`` entries, the ``(optimizer group index, FPTT
        group, params, W_bar, lam)`` parts that share an optimizer group; ``None`` where the
        optimizer or a parameter is not supported. An index, not the group: the optimizer's
        ``load_state_dict`` replaces the group dicts (and FPTT's alpha/beta are read per step)."""
        if self._kind is None:
            return None
        group_of = {id(p): i for i, g in enumerate(self.optimizer.param_groups) for p in g["params"]}
        parts = []
        for group, ps, w_bar, lam in cache:
            if any(id(p) not in group_of or p.is_complex() for p in ps):
                return None
            by_group = {}
            for i, p in enumerate(ps):
                by_group.setdefault(group_of[id(p)], []).append(i)
            parts += [(g, group, [ps[i] for i in idx], [w_bar[i] for i in idx], [lam[i] for i in idx])
                      for g, idx in by_group.items()]
        return parts

    def gather(self, plan):
        """The tensors of one step: per part ``(optimizer group, FPTT group, params, grads, W_bar,
        lam, first state, second state, steps)``; ``None`` if a group uses an option the kernel
        does not have or the optimizer's state does not exist yet. Reads only, writes nothing."""
        groups, state = self.optimizer.param_groups, self.optimizer.state
        work = []
        for g, group, ps, w_bar, lam in plan:
            opt = groups[g]
            if any(opt.get(k) for k in _UNSUPPORTED_OPTIONS) or any(torch.is_tensor(v) for v in (*opt["betas"], opt["eps"])):
                return None
            st = [state.get(p) for p in ps]
            if not all(s and self._second in s for s in st):
                return None
            work.append((opt, group, ps, [p.grad for p in ps], w_bar, lam, [s["exp_avg"] for s in st],
                         [s[self._second] for s in st], [s["step"] for s in st]))
        return work

    @torch.no_grad()
    def grad_norm(self, work) -> torch.Tensor:
        """The 2-norm of the task plus regulariser gradient (``work`` from :meth:`gather`)."""
        norms = [self.kernels["regularized_grad_norm"](ps, grads, w_bar, lam, group["alpha"])
                 for _, group, ps, grads, w_bar, lam, *_ in work]
        return torch.linalg.vector_norm(torch.stack(norms))

    @torch.no_grad()
    def run(self, work, clip_scale: float = 1.0) -> Exception | None:
        """Step every part of ``work`` (from :meth:`gather`), its gradients scaled by ``clip_scale`` first.

        The kernel is compiled for each optimizer group at its first step. If that fails for the
        first group, nothing is written and the error is raised; if it fails for a later one,
        when earlier groups are already stepped, this step is finished with the same math run
        eagerly and the error is returned (the caller then stops using the fused step)."""
        kernel, failure, stepped = self.kernels[self._kind], None, False
        for opt, group, ps, grads, w_bar, lam, first, second, steps in work:
            b1, b2, lr = *opt["betas"], float(opt["lr"])
            # per parameter (lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), clip scale) from Python floats,
            # as torch.optim's host-side bias corrections, then float32 at least (bf16 weights too).
            # One read of the step counts and one small tensor (the same from tensor ops took 76 us).
            coef = torch.tensor([(lr / (1 - b1 ** t), (1 - b2 ** t) ** -0.5, clip_scale)
                                 for t in (s + 1 for s in torch.stack(steps).tolist())],
                                dtype=torch.promote_types(ps[0].dtype, torch.float32))
            args = (ps, grads, w_bar, lam, first, second, steps, coef, b1, b2, opt["eps"], opt["weight_decay"],
                    group["alpha"], group["beta"])
            try:
                kernel(*args)
            except torch._dynamo.exc.BackendCompilerFailed as e:
                if not stepped:
                    raise
                kernel, failure = _EAGER[self._kind], e
                kernel(*args)  # a failed compilation runs nothing: the steps are counted once
            stepped = True
        return failure
