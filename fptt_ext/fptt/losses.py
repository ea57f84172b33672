"""Per-step losses for online training (the equations: docs/concepts/fptt.md, "The losses").

* :class:`ClassificationLoss` - the target is known only at the end:
  ``l_t = beta_t CE(y_hat_t, y) + (1 - beta_t) l_div,t`` with ``beta_t = t / T``
  and ``l_div,t = -sum_j Q_t(j | y) log P_t(j)``, where ``Q_t(. | y)`` is a running
  (exponential moving average) estimate of the model's predicted distribution
  for class ``y`` at step ``t``, uniform at start.
* :class:`PerStepLoss` - a target per step: ``l_t = loss(y_hat_t, y_t)``.
* :class:`RegressionEndLoss` - ``l_t = (t / T) MSE(y_hat_t, y)`` (Add-task), or the
  authors' per-window weight ``(p + 1/K) MSE``.

Steps ``t`` are 1-based: at ``t = T`` the classification loss is plain CE.

Example:
    >>> import torch
    >>> loss = ClassificationLoss(num_classes=3, T=4)
    >>> logits, y = torch.zeros(2, 3), torch.tensor([0, 2])
    >>> round(float(loss(logits, y, t=4)), 4)      # plain CE of uniform logits: log 3
    1.0986
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DIVERGENCES", "LOSSES", "ClassificationLoss", "PerStepLoss", "RegressionEndLoss", "check_class_labels",
           "make_loss"]

DIVERGENCES = ("running", "uniform", "none")
LOSSES = ("classification", "per_step", "regression_end")  # the losses make_loss builds by name


def check_class_labels(y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """``y`` as ``torch.long`` class indices, after checking they are integers in ``[0, num_classes)``.

    Raises ``TypeError`` for labels that are not integers and ``ValueError`` for an index out of
    range, each saying what was expected and what was given. One reduction over ``y``: call it
    once per batch, not per step.

    Example:
        >>> check_class_labels(torch.tensor([0, 2], dtype=torch.int32), 3)
        tensor([0, 2])
        >>> try:
        ...     check_class_labels(torch.tensor([0, 3]), 3)
        ... except ValueError as err:
        ...     print(err)
        class labels must be in [0, num_classes=3), got values from 0 to 3
        >>> try:
        ...     check_class_labels(torch.tensor([0.0, 1.0]), 3)
        ... except TypeError as err:
        ...     print(err)
        class labels must be integers (torch.long), got dtype torch.float32; convert whole-number labels with y.long()
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"class labels must be a torch.Tensor of integers, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"class labels must be integers (torch.long), got dtype {y.dtype}; "
                        "convert whole-number labels with y.long()")
    if num_classes is not None and y.numel():
        lo, hi = y.min().item(), y.max().item()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"class labels must be in [0, num_classes={num_classes}), got values from {lo} to {hi}")
    return y.long()


class ClassificationLoss(nn.Module):
    """CE at ``t/T`` weight plus the divergence term towards ``Q_t(. | y)``.

    ``l_t = (t/T) CE + (1 - t/T) w_div l_div,t`` with ``l_div,t = -sum_j Q_t(j | y) log P_t(j)``.

    Args:
        num_classes, T: the classes and the sequence length.
        momentum: of the running estimate of ``Q_t(. | y)``.
        divergence: ``"running"`` (``Q_t(. | y)`` a running average of the model's predicted
            distribution for class y at step t, uniform at start; docs/concepts/fptt.md),
            ``"uniform"`` (``Q`` fixed uniform: the authors' image scripts for their first
            20 epochs) or ``"none"`` (plain ``(t/T) CE``).
        divergence_weight: ``w_div``. The authors' scripts average ``-Q log P`` over the
            classes rather than summing it, which is ``w_div = 1 / num_classes``.

    Example:
        >>> import torch
        >>> loss = ClassificationLoss(num_classes=2, T=2)
        >>> logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> l1 = loss(logits, y, t=1)                    # half CE, half divergence from Q_1 (uniform)
        >>> loss.update(logits, y, t=1)                  # Q_1(. | 0) moves towards the prediction
        >>> bool(loss(logits, y, t=1) < l1), loss.Q[0, 0, 0].item() > 0.5
        (True, True)
        >>> plain = ClassificationLoss(num_classes=2, T=2, divergence="none")
        >>> round(plain(logits, y, t=1).item(), 4)       # (1/2) CE only
        0.0635
    """

    per_step_target = False

    def __init__(self, num_classes: int, T: int, momentum: float = 0.9, divergence: str = "running",
                 divergence_weight: float = 1.0):
        super().__init__()
        if num_classes < 2 or T < 1:
            raise ValueError(f"need num_classes >= 2 and T >= 1, got num_classes={num_classes}, T={T}")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if not divergence_weight >= 0 or math.isinf(divergence_weight):
            raise ValueError(f"divergence_weight must be a finite number >= 0, got {divergence_weight!r}")
        self.num_classes, self.T, self.momentum = num_classes, T, momentum
        self.divergence, self.divergence_weight = divergence, float(divergence_weight)
        self.register_buffer("Q", torch.full((T, num_classes, num_classes), 1.0 / num_classes))

    def forward(self, logits: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[-1] != self.num_classes:
            raise ValueError(f"ClassificationLoss(num_classes={self.num_classes}) needs class scores of shape "
                             f"[B, {self.num_classes}], got shape {tuple(logits.shape)}; the model's output size "
                             "and num_classes must agree")
        if y.is_floating_point():
            raise TypeError(f"class labels must be integers (torch.long), got dtype {y.dtype}")
        beta_t = t / self.T
        logp = F.log_softmax(logits, dim=-1)
        ce = F.nll_loss(logp, y)
        if beta_t >= 1.0 or self.divergence == "none" or self.divergence_weight == 0:
            return ce if beta_t >= 1.0 else beta_t * ce
        if self.divergence == "uniform":
            div = -logp.mean(-1).mean()
        else:
            q = self.Q[t - 1].to(logp.dtype)[y]  # (B, C): Q_t(. | y_b)
            div = -(q * logp).sum(-1).mean()
        return beta_t * ce + (1.0 - beta_t) * self.divergence_weight * div

    @torch.no_grad()
    def update(self, logits: torch.Tensor, y: torch.Tensor, t: int) -> None:
        """Move ``Q_t(. | y)`` towards the batch's mean predicted distribution per class."""
        if self.divergence != "running":
            return
        p = F.softmax(logits.float(), dim=-1)
        sums = torch.zeros_like(self.Q[0]).index_add_(0, y, p)
        counts = torch.bincount(y, minlength=self.num_classes).unsqueeze(1)
        seen = counts.squeeze(1) > 0
        mean = sums[seen] / counts[seen]
        self.Q[t - 1, seen] = self.momentum * self.Q[t - 1, seen] + (1 - self.momentum) * mean


class PerStepLoss(nn.Module):
    """``l_t = fn(y_hat_t, y_t)``; ``fn`` defaults to cross-entropy for integer targets, else MSE.

    Example:
        >>> import torch
        >>> PerStepLoss()(torch.zeros(2, 3), torch.tensor([0, 1]), t=1).item() > 1.0   # CE for class targets
        True
        >>> PerStepLoss()(torch.zeros(2), torch.ones(2), t=1).item()                    # MSE for float targets
        1.0
    """

    per_step_target = True

    def __init__(self, fn=None):
        super().__init__()
        self.fn = fn

    def forward(self, out: torch.Tensor, y_t: torch.Tensor, t: int) -> torch.Tensor:
        if self.fn is not None:
            return self.fn(out, y_t)
        if not y_t.is_floating_point():
            return F.cross_entropy(out, y_t)
        # mse_loss would broadcast [B, 1] against [B] into [B, B]: a silently wrong loss
        return F.mse_loss(_as_target_shape(out, y_t, "per-step target"), y_t)

    def update(self, out, y, t):
        pass


class RegressionEndLoss(nn.Module):
    """MSE against a target known at the end, weighted by how far the sequence has run.

    ``weighting="time"`` (default; docs/concepts/fptt.md): ``l_t = (t / T) MSE(y_hat_t, y)``.
    ``weighting="window"`` with ``K`` equal windows: ``l_t = (p + 1/K) MSE``, ``p``
    the 0-based index of the window ending at ``t`` - the weight of the authors'
    released Add-task script (``(p + 1/PARTS) * loss``), which grows 10x faster than
    ``t / T`` at K = 10 and so puts more weight on the task against the FPTT regulariser.

    Example:
        >>> import torch
        >>> loss = RegressionEndLoss(T=4)
        >>> loss(torch.zeros(2, 1), torch.ones(2), t=1).item(), loss(torch.zeros(2, 1), torch.ones(2), t=4).item()
        (0.25, 1.0)
        >>> w = RegressionEndLoss(T=10, weighting="window", K=5)       # windows of 2 steps
        >>> [round(w(torch.zeros(1, 1), torch.ones(1), t=t).item(), 2) for t in (2, 4, 10)]
        [0.2, 1.2, 4.2]
    """

    per_step_target = False

    def __init__(self, T: int, weighting: str = "time", K: int | None = None):
        super().__init__()
        if weighting not in ("time", "window"):
            raise ValueError(f"weighting must be 'time' or 'window', got {weighting!r}")
        if weighting == "window" and (K is None or not 1 <= K <= T):
            raise ValueError(f"weighting='window' needs the number of windows K with 1 <= K <= T={T}, got K={K!r}")
        self.T, self.weighting, self.K = T, weighting, K

    def weight(self, t: int) -> float:
        if self.weighting == "time":
            return t / self.T
        return (math.ceil(t * self.K / self.T) - 1) + 1 / self.K

    def forward(self, out: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
        return self.weight(t) * F.mse_loss(_as_target_shape(out, y, "regression target"), y)

    def update(self, out, y, t):
        pass


def _as_target_shape(out: torch.Tensor, y: torch.Tensor, what: str) -> torch.Tensor:
    """``out`` reshaped to ``y``'s shape ([B, 1] outputs for [B] targets), or a ValueError."""
    if out.shape == y.shape:
        return out
    if out.numel() != y.numel():
        raise ValueError(f"the model's output at a step has shape {tuple(out.shape)}, which does not fit the {what} "
                         f"of shape {tuple(y.shape)}; expected one target value per output value")
    return out.reshape(y.shape)


def make_loss(kind: str | nn.Module, T: int, num_classes: int | None = None, **options) -> nn.Module:
    """``"classification"``, ``"per_step"``, ``"regression_end"``, or a loss module as is.

    ``options`` go to the loss class (e.g. ``divergence="uniform"`` for classification).

    Example:
        >>> type(make_loss("classification", T=10, num_classes=3)).__name__, type(make_loss("per_step", T=10)).__name__
        ('ClassificationLoss', 'PerStepLoss')
    """
    if isinstance(kind, nn.Module):
        return kind
    if kind == "classification":
        if num_classes is None:
            raise ValueError("loss='classification' needs num_classes=")
        return ClassificationLoss(num_classes, T, **options)
    if kind == "per_step":
        return PerStepLoss(**options)
    if kind == "regression_end":
        return RegressionEndLoss(T, **options)
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES} or a loss module")
