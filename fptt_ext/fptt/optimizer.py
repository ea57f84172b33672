"""Forward Propagation Through Time (FPTT) as a wrapper around any torch optimizer.

FPTT (Kag & Saligrama, 2021; Yin et al., 2023) trains recurrent / spiking
networks online: each step's loss gets a dynamic regulariser that ties the
weights ``W`` to a running estimate ``W_bar``, so that many cheap per-step
updates behave like one update on the whole sequence.

:class:`FPTT` does not replace your optimizer; it adds the regulariser
(:meth:`FPTT.regularizer`) and, after the wrapped optimizer's step, updates
its own per-parameter state with fused ``torch._foreach_*`` kernels.
"""
import copy
import math
import warnings

import torch

from .fused import FusedStep, fused_updates

__all__ = ["FPTT", "all_finite"]


def all_finite(tensors) -> bool:
    """True if no tensor in the list holds NaN/Inf (``None`` entries are ignored); one fused op.

    Example:
        >>> import torch
        >>> all_finite([torch.ones(2), None]), all_finite([torch.tensor([1.0, float("nan")])])
        (True, False)
    """
    # Fast path: the 2-norms propagate NaN/Inf, so finite norms prove every entry finite
    # (one fused kernel; the max-abs norm on CPU is ~15x slower, 3.5 ms per step on the
    # R-MNIST net). A non-finite 2-norm may also be an overflow of large finite entries
    # (fp16), so only then does the max-abs norm, which cannot overflow, decide.
    tensors = [t for t in tensors if t is not None]
    if not tensors or bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all()):
        return True
    return bool(torch.stack(torch._foreach_norm(tensors, ord=math.inf)).isfinite().all())

_VARIANTS = ("practical", "exact")
_NONFINITE = ("raise", "skip")


class FPTT:
    r"""Wrap ``optimizer`` with the FPTT dynamic regulariser and state updates.

    Practical variant (default; the authors' released code)::

        R(W)  = alpha/2 * sum ||W - W_bar||^2 - sum <W, lam>
        optimizer.step()                              # on task_loss + R
        lam   <- lam - alpha * (W - W_bar)
        W_bar <- (1 - beta) * W_bar + beta * W - (beta / alpha) * lam

    Exact variant (paper eq. 1a-1c; ``beta`` is unused)::

        R(W)  = alpha/2 * sum ||W - W_bar - g / (2 alpha)||^2
        optimizer.step()                              # on task_loss + R
        g     <- grad of task_loss_t at the updated W (via ``closure``)
        W_bar <- (W_bar + W) / 2 - g / (2 alpha)

    ``g`` is 0 before the first step.  ``step(closure)`` is required for
    "exact": ``closure()`` must recompute the step's task loss (same input,
    same pre-step recurrent state, no regulariser, no ``backward``) and return
    it with its graph.

    Per-parameter state (``self.state[p]``): ``W_bar`` (initialised to a copy
    of ``p``) and ``lam`` (zeros) for "practical"; ``W_bar`` and ``grad_prev``
    (zeros) for "exact".

    Args:
        params: iterable of tensors or of dicts ``{'params', 'alpha', 'beta'}``
            (a group may override ``alpha``/``beta``); only tensors with
            ``requires_grad`` are tracked, and all must be in ``optimizer``.
        optimizer: any ``torch.optim.Optimizer`` that steps without a closure.
            LR schedulers take ``fptt.optimizer``.
        alpha, beta: regulariser strength (> 0) and W_bar mixing (0, 1].
        variant: "practical" or "exact".
        max_grad_norm: if set, ``step()`` clips the total gradient norm of the
            tracked parameters before the wrapped optimizer steps (that norm is also
            the finiteness check: one pass over the gradients for both).
        nonfinite: "raise" a ``FloatingPointError`` on NaN/Inf gradients, or
            "skip" the whole step with a warning (counted in ``skipped_steps``).
            Either way the parameters, the wrapped optimizer's state and the FPTT
            state are left as they were before the step. In the exact variant the
            closure's gradient is only known after the wrapped optimizer has
            stepped, so that variant copies the parameters and the optimizer's
            state before every step, and puts them back if it is non-finite.
        fused: run the regulariser's gradient and the practical ``lam``/``W_bar``
            update each as one compiled kernel per parameter (``torch.compile``: one pass
            over memory instead of four; :mod:`fptt_ext.fptt.fused`), like ``fused=True`` in
            ``torch.optim``. Needs a C++ compiler and a few seconds of compilation in the
            first step; without a compiler it warns and keeps the foreach kernels.
            The numbers agree with the foreach path to rounding. With ``torch.optim.Adam`` or
            ``Adamax``, ``step(with_regularizer=True)`` goes further: regulariser gradient,
            clipping, the optimizer's update and the FPTT update in one kernel per parameter
            (:class:`~fptt_ext.fptt.fused.FusedStep`), from the second step on.

    ``state_dict()`` returns references (like ``torch.optim``); deep-copy it
    if you keep training and want a snapshot.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> fptt = FPTT(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1))
        >>> loss = model(torch.ones(1, 2)).pow(2).sum() + fptt.regularizer()
        >>> loss.backward(); fptt.step(); fptt.zero_grad()
        >>> sorted(fptt.state[model.weight])
        ['W_bar', 'lam']
    """

    def __init__(self, params, optimizer, alpha=0.1, beta=0.5, variant="practical",
                 max_grad_norm=None, nonfinite="raise", fused=False):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer instance, got "
                            f"{type(optimizer).__name__}; construct e.g. torch.optim.Adam(...) first.")
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}.")
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}.")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be None or > 0, got {max_grad_norm!r}.")
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of tensors or of dicts, got a single "
                            "Tensor; pass model.parameters() or [tensor].")
        self.optimizer = optimizer
        self.skipped_steps = 0  # steps skipped for a non-finite gradient (nonfinite="skip")
        self.variant = variant
        self.max_grad_norm = max_grad_norm
        self.nonfinite = nonfinite
        self._trace_key = "lam" if variant == "practical" else "grad_prev"
        self._kernels = fused_updates() if fused else None
        self._fused_step = FusedStep(optimizer, self._kernels) if self._kernels is not None else None

        raw = list(params)
        if raw and not isinstance(raw[0], dict):
            raw = [{"params": raw}]
        self.param_groups, seen = [], set()
        for g in raw:
            ps = g["params"]
            ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
            ps = [p for p in ps if p.requires_grad]
            ids = {id(p) for p in ps}
            if len(ids) != len(ps) or ids & seen:
                raise ValueError("a parameter appears more than once in the FPTT parameters; "
                                 "list each parameter once.")
            seen |= ids
            group = {"params": ps, "alpha": g.get("alpha", alpha), "beta": g.get("beta", beta)}
            self._check_hparams(group)
            self.param_groups.append(group)
        if not seen:
            raise ValueError("FPTT got no parameters with requires_grad=True; pass the "
                             "model's trainable parameters.")
        managed = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = len(seen - managed)
        if missing:
            raise ValueError(f"{missing} of {len(seen)} FPTT parameters are not managed by the "
                             f"wrapped optimizer; build the optimizer from the same parameters.")

        self.state = {}
        for g in self.param_groups:
            for p in g["params"]:
                self.state[p] = {"W_bar": p.detach().clone(),
                                 self._trace_key: torch.zeros_like(p, memory_format=torch.preserve_format)}
        self._build_cache()

    @staticmethod
    def _check_hparams(group):
        # an infinite alpha pins W to W_bar and makes lam/alpha undefined (inf/inf)
        if not (group["alpha"] > 0 and math.isfinite(group["alpha"])):
            raise ValueError(f"alpha must be a finite number > 0, got {group['alpha']!r}.")
        if not 0 < group["beta"] <= 1:
            raise ValueError(f"beta must be in (0, 1], got {group['beta']!r}.")

    def _build_cache(self):
        # Lists are built once so step()/regularizer() only dispatch foreach kernels.
        # foreach kernels reject empty lists, hence the filter.
        self._cache = [(g, g["params"], [self.state[p]["W_bar"] for p in g["params"]],
                        [self.state[p][self._trace_key] for p in g["params"]])
                       for g in self.param_groups if g["params"]]
        self._all_params = [p for _, ps, _, _ in self._cache for p in ps]
        # A persistent buffer for W - W_bar: a fresh foreach_sub result every step costs
        # far more than the subtraction (allocation and page faults, up to 2 ms per step
        # on the R-MNIST net, as the allocator hands the memory back to the OS in between).
        self._scratch = [[torch.empty_like(p) for p in ps] for _, ps, _, _ in self._cache]
        self._total_norm = None  # the gradient norm _finite() computed for clipping
        self._fused_plan = self._fused_step.plan(self._cache) if self._fused_step is not None else None

    def regularizer(self):
        """Return R(W), a scalar tensor with graph to the tracked parameters."""
        return _Regularizer.apply(self, *self._all_params)

    @torch.no_grad()
    def add_regularizer_grad_(self):
        """Add the gradient of :meth:`regularizer` to the tracked parameters' ``.grad``.

        The same gradient ``alpha (W - W_bar) - lam`` ("practical"; ``alpha (W - W_bar) -
        g / 2`` for "exact") as ``(loss + regularizer()).backward()`` gives, without
        recording R in the graph or computing its value: four in-place multi-tensor
        kernels per parameter group. Call it after ``loss.backward()`` and before :meth:`step`;
        a parameter with no ``.grad`` gets the regulariser's gradient alone.

        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> fptt = FPTT([w], torch.optim.SGD([w], lr=0.1))
        >>> with torch.no_grad():
        ...     _ = w.add_(1.0)
        >>> fptt.add_regularizer_grad_(); w.grad          # alpha * (W - W_bar)
        tensor([0.1000, 0.1000])
        """
        c = 1.0 if self.variant == "practical" else 0.5
        self._zero_missing_grads()
        for (g, ps, w_bar, trace), d in zip(self._cache, self._scratch):
            grads = [p.grad for p in ps]  # re-read: backward() may have created new tensors
            if self._fused("regularizer_grad", grads, ps, w_bar, trace, g["alpha"], c):
                continue
            # W - W_bar first (exactly 0 where W == W_bar), into the persistent buffer
            torch._foreach_copy_(d, ps)
            torch._foreach_sub_(d, w_bar)
            torch._foreach_add_(grads, d, alpha=g["alpha"])
            torch._foreach_add_(grads, trace, alpha=-c)

    def _zero_missing_grads(self):
        # a parameter without a task gradient gets the regulariser's gradient alone
        if any(p.grad is None for p in self._all_params):
            for p in self._all_params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)

    @property
    def fused(self) -> bool:
        """Whether the updates run as compiled kernels (``fused=True`` and a C++ compiler)."""
        return self._kernels is not None

    def _fused(self, name, *args) -> bool:
        """Run compiled kernel ``name``; False (foreach path to be used) if there is none."""
        if self._kernels is None:
            return False
        try:
            self._kernels[name](*args)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            # Compilation precedes execution, so nothing was written: fall back for good.
            warnings.warn(f"FPTT(fused=True): compiling the update failed ({type(e).__name__}); "
                          f"using the foreach kernels instead.", RuntimeWarning, stacklevel=3)
            self._kernels = None
            return False
        return True

    def _finite(self, grads):
        if self.max_grad_norm is None:
            return all_finite(grads)
        # Clipping needs the total 2-norm anyway: a finite one proves every entry finite, so
        # one pass over the gradients both checks and measures them (clipping used to take
        # a second). Only a non-finite norm (NaN/Inf, or an overflow of huge finite
        # entries) needs all_finite's max-abs check.
        self._total_norm = torch.nn.utils.get_total_norm([t for t in grads if t is not None], foreach=True)
        return bool(torch.isfinite(self._total_norm)) or all_finite(grads)

    def _nonfinite(self, what):
        msg = (f"non-finite (NaN/Inf) {what}; FPTT step skipped, parameters, W_bar and "
               f"{self._trace_key} unchanged. Lower the learning rate, set max_grad_norm, "
               f"or check the loss.")
        if self.nonfinite == "raise":
            raise FloatingPointError(msg + " Pass nonfinite='skip' to skip such steps.")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def step(self, closure=None, *, with_regularizer=False):
        """Step the wrapped optimizer, then update the FPTT state.

        ``with_regularizer=True`` adds the regulariser's gradient first: the same step as
        :meth:`add_regularizer_grad_` then ``step()``, after a plain ``loss.backward()``. With
        ``fused=True`` and Adam or Adamax (practical variant) that whole step is one compiled
        kernel per parameter, and the gradient of ``loss + R`` is never written to ``.grad``.

        Returns the closure's task loss (detached) for "exact", else None (also when the
        step is skipped). Raises ``RuntimeError`` if no tracked parameter has a gradient.

        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> fptt = FPTT(model.parameters(), torch.optim.Adam(model.parameters(), lr=0.1), fused=True)
        >>> for _ in range(2):                            # the second step runs fused (if a compiler exists)
        ...     model(torch.ones(1, 2)).pow(2).sum().backward()
        ...     fptt.step(with_regularizer=True); fptt.zero_grad()
        >>> sorted(fptt.optimizer.state[model.weight]), int(fptt.optimizer.state[model.weight]["step"])
        (['exp_avg', 'exp_avg_sq', 'step'], 2)
        """
        if self.variant == "exact" and closure is None:
            raise ValueError("variant='exact' needs step(closure): closure() must recompute "
                             "and return the step's task loss (with graph, no backward).")
        if self.variant == "practical" and closure is not None:
            raise ValueError("closure is only used by variant='exact'; call step() without it.")
        grads = [p.grad for p in self._all_params]
        if all(g is None for g in grads):
            # Stepping anyway would move W_bar and lam as if a zero gradient had been seen.
            raise RuntimeError("FPTT.step() found no gradient on any tracked parameter; call "
                               "loss.backward() first (with fptt.regularizer() in the loss, or followed by "
                               "fptt.add_regularizer_grad_(), or step(with_regularizer=True)).")
        if with_regularizer:
            if self._step_fused():
                return None
            self.add_regularizer_grad_()
            grads = [p.grad for p in self._all_params]
        if not self._finite(grads):
            self.skipped_steps += 1
            self._nonfinite("gradient")
            return None
        if self.max_grad_norm is not None:  # with the norm _finite() measured
            torch.nn.utils.clip_grads_with_norm_(self._all_params, self.max_grad_norm, self._total_norm, foreach=True)
            self._total_norm = None
        if self.variant == "practical":
            self.optimizer.step()
            return self._update_practical()
        before = self._snapshot()
        self.optimizer.step()
        return self._update_exact(closure, before)

    def _step_fused(self) -> bool:
        """The practical step with the regulariser's gradient as one kernel per parameter
        (:class:`~fptt_ext.fptt.fused.FusedStep`); False where the general path must take this
        step: no such kernel, not ready yet, or a non-finite gradient (which that path reports)."""
        if self._fused_plan is None or self._fused_step is None or self.variant != "practical":
            return False
        self._zero_missing_grads()
        work = self._fused_step.gather(self._fused_plan)
        if work is None:
            return False
        scale = 1.0
        try:
            if self.max_grad_norm is None:
                if not all_finite([p.grad for p in self._all_params]):
                    return False
            else:  # the norm of the gradient of loss + R: also the finiteness check
                total = float(self._fused_step.grad_norm(work))
                if not math.isfinite(total):
                    return False
                scale = min(1.0, self.max_grad_norm / (total + 1e-6))  # as clip_grads_with_norm_
            late_failure = self._fused_step.run(work, scale)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            self._drop_fused_step(e)  # compilation precedes execution: nothing was written
            return False
        if late_failure is not None:  # a later optimizer group's: run() finished this step eagerly
            self._drop_fused_step(late_failure)
        return True

    def _drop_fused_step(self, error):
        warnings.warn(f"FPTT(fused=True): compiling the fused step failed ({type(error).__name__}); using "
                      f"the separate kernels instead.", RuntimeWarning, stacklevel=4)
        self._fused_step = None

    def _snapshot(self):
        """The wrapped optimizer's parameters and state, to undo its step (exact variant)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        state = {p: {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in s.items()}
                 for p, s in self.optimizer.state.items()}
        return params, [p.detach().clone() for p in params], state

    @torch.no_grad()
    def _restore(self, snapshot):
        params, values, state = snapshot
        torch._foreach_copy_(params, values)
        self.optimizer.state.clear()
        self.optimizer.state.update(state)

    @torch.no_grad()
    def _update_practical(self):
        for g, ps, w_bar, lam in self._cache:
            a, b = g["alpha"], g["beta"]
            if self._fused("practical_update", ps, w_bar, lam, a, b):
                continue
            # lam -= a (W - W_bar) as two in-place passes (each pass over the parameters costs
            # ~0.3 ms here, memory bound): no W - W_bar buffer to fill, four passes in all.
            # The rounding, ~eps * a * |W|, is of the order of that of the update itself.
            torch._foreach_add_(lam, ps, alpha=-a)
            torch._foreach_add_(lam, w_bar, alpha=a)
            torch._foreach_lerp_(w_bar, ps, b)
            torch._foreach_add_(w_bar, lam, alpha=-b / a)

    def _update_exact(self, closure, before):
        # backward() rather than autograd.grad(): under DistributedDataParallel only
        # backward() runs the gradient all-reduce, which keeps W_bar equal on all ranks.
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
            if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
                raise ValueError("closure() must return the task loss as a tensor with graph "
                                 "to the parameters (do not compute it under torch.no_grad()).")
            loss.backward()
        grads = [p.grad for p in self._all_params]
        if not self._finite(grads):
            # The optimizer has already stepped: undo it, so a skipped step leaves no trace.
            self.optimizer.zero_grad(set_to_none=True)
            self._restore(before)
            self.skipped_steps += 1
            self._nonfinite("gradient of closure() loss at the updated weights")
            return None
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(self._all_params, grads)]
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            i = 0
            for g, ps, w_bar, g_prev in self._cache:
                new = grads[i:i + len(ps)]
                i += len(ps)
                torch._foreach_copy_(g_prev, new)
                torch._foreach_lerp_(w_bar, ps, 0.5)
                torch._foreach_add_(w_bar, g_prev, alpha=-0.5 / g["alpha"])
        return loss.detach()

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def load_running_estimate(self):
        """Set the weights to their running estimate, ``W <- W_bar`` (``lam`` and ``W_bar`` kept).

        The authors' training scripts do this at the end of every epoch, before testing
        and before training on: ``W_bar`` averages the recent iterates, so it is the
        smoother of the two.

        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> fptt = FPTT([w], torch.optim.SGD([w], lr=1.0), beta=0.25)
        >>> w.grad = torch.ones(2); fptt.step()           # W = -1, W_bar = (1 - 2 beta) 0 + 2 beta (-1)
        >>> fptt.load_running_estimate(); w.data
        tensor([-0.5000, -0.5000])
        """
        for _, ps, w_bar, _ in self._cache:
            torch._foreach_copy_(ps, w_bar)

    @torch.no_grad()
    def reset_running_estimate(self):
        """Re-initialise W_bar to the current W and lam / grad_prev to 0 (e.g. new task)."""
        for _, ps, w_bar, trace in self._cache:
            torch._foreach_copy_(w_bar, ps)
            torch._foreach_zero_(trace)

    def state_dict(self):
        """FPTT state indexed by parameter position, plus the wrapped optimizer's."""
        index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        groups = [{"alpha": g["alpha"], "beta": g["beta"], "params": [index[p] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[p]: dict(s) for p, s in self.state.items()}
        return {"variant": self.variant, "state": state, "param_groups": groups,
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict):
        """Load a dict from :meth:`state_dict` (tensors are copied into place)."""
        if state_dict.get("variant") != self.variant:
            raise ValueError(f"state_dict is for variant={state_dict.get('variant')!r}, but this "
                             f"FPTT uses {self.variant!r}; construct FPTT with the same variant.")
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        saved = [len(g["params"]) for g in groups]
        if sizes != saved:
            raise ValueError(f"parameter count per group mismatch: state_dict has {saved}, this "
                             f"FPTT has {sizes}; build it from the same model/param groups.")
        params = [p for g in self.param_groups for p in g["params"]]
        if len(state_dict["state"]) != len(params):
            raise ValueError(f"state_dict has state for {len(state_dict['state'])} parameters, "
                             f"this FPTT tracks {len(params)}.")
        for i, p in enumerate(params):
            for key in ("W_bar", self._trace_key):
                t = state_dict["state"][i][key]
                if t.shape != p.shape:
                    raise ValueError(f"shape mismatch for parameter {i} state {key!r}: state_dict "
                                     f"has {tuple(t.shape)}, parameter is {tuple(p.shape)}.")
        for sg in groups:
            self._check_hparams(sg)
        # Validation is done above so a bad dict leaves this object untouched.
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for g, sg in zip(self.param_groups, groups):
            g["alpha"], g["beta"] = sg["alpha"], sg["beta"]
        with torch.no_grad():
            for i, p in enumerate(params):
                for key in ("W_bar", self._trace_key):
                    self.state[p][key].copy_(state_dict["state"][i][key])
        self._build_cache()

    def __repr__(self):
        hp = ", ".join(f"(alpha={g['alpha']}, beta={g['beta']}, n={len(g['params'])})"
                       for g in self.param_groups)
        fused = ", fused=True" if self.fused else ""
        return (f"FPTT(variant={self.variant!r}, groups=[{hp}], optimizer={type(self.optimizer).__name__}"
                f"{fused})")


class _Regularizer(torch.autograd.Function):
    """R(W) with its analytic gradient, so autograd records one node instead of a chain
    of norm/stack/square backward kernels.

    Both variants are ``alpha/2 ||W - target||^2`` plus a W-independent constant:
    practical ``target = W_bar + lam/alpha``, constant ``alpha/2 (||W_bar||^2 -
    ||target||^2)`` (so that the value is ``alpha/2 ||W - W_bar||^2 - <W, lam>``);
    exact ``target = W_bar + g/(2 alpha)``, no constant. The gradient is
    ``alpha (W - target)``. There is no multi-tensor dot product, hence the
    completed square; its constant can lose ~eps*||W_bar||^2 to cancellation, which
    affects the value only, never the gradient.
    """

    @staticmethod
    def forward(ctx, fptt, *params):
        total = params[0].new_zeros(())
        diffs, ctx.groups = [], []
        for g, ps, w_bar, trace in fptt._cache:
            a = g["alpha"]
            target = torch._foreach_add(w_bar, trace, alpha=(1.0 if fptt.variant == "practical" else 0.5) / a)
            d = torch._foreach_sub(ps, target)
            sq = torch.stack(torch._foreach_norm(d)).square().sum()
            if fptt.variant == "practical":
                sq = sq + (torch.stack(torch._foreach_norm(w_bar)).square().sum()
                           - torch.stack(torch._foreach_norm(target)).square().sum())
            total = total + 0.5 * a * sq
            diffs += d
            ctx.groups.append((a, len(d)))
        ctx.save_for_backward(*diffs)  # (so saved-tensor hooks see this memory too)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grads, diffs, i = [], ctx.saved_tensors, 0
        for a, n in ctx.groups:
            grads += torch._foreach_mul(list(diffs[i:i + n]), grad_out * a)
            i += n
        return (None, *grads)
