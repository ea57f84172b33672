"""Property-based tests (hypothesis) over what users feed the neurons and the trainer.

Whatever the input's shape (empty T, batch 1, batch 0, wrong rank), dtype (half, bfloat16,
double, integers, bool) or values (NaN, +-Inf), the outcome is either one of the exceptions
the package raises on purpose, with a message, or a correct result: never a raw torch
error from deep inside (a RuntimeError, IndexError, AttributeError), never a silent wrong
shape. The examples are derandomised, so every run (and CI) tries the same cases.

The trainer's inputs are drawn for the model it trains (float32, the model's 3 input
features): a float dtype or feature count the user's own first layer does not take is
that layer's business (torch reports it there), while the neurons, which build their
gates from their input, are tried with every dtype.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional
from torch import nn

import fptt_ext
from fptt_ext.fptt import SequenceTrainer, window_ends
from fptt_ext.neurons.fused import use_fused
from fptt_ext.spikingjelly import ALIFNode, LINode, LTCNode

CLEAN = (ValueError, TypeError)  # what bad input may raise (FloatingPointError too, for a NaN loss)
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Repeats weight the draws towards well-formed input, so that most examples get far enough
# to check a result, while every malformed kind still comes up many times.
DTYPES = [torch.float32] * 3 + [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]
SPECIAL = [None] * 4 + [float("nan"), float("inf"), float("-inf")]


@st.composite
def tensors(draw, shape, dtypes=DTYPES, low=-1.0, high=3.0):
    """A tensor of ``shape`` and a drawn dtype, maybe with one NaN/Inf in it."""
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**16))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * (high - low) + low
    special = draw(st.sampled_from(SPECIAL))
    if special is not None and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = special
    return x.to(dtype)


def _is_finite_float(x: torch.Tensor) -> bool:
    return x.is_floating_point() and bool(torch.isfinite(x.float()).all())


# ----------------------------------------------------------------------------------------- neurons
# name -> (constructor, the ranks it takes, its fixed size or None when inferred)
SINGLE_STEP = {
    "LTC": (lambda: fptt_ext.LTC(init_hidden=True), (2, 4), None),
    "LTC(conv)": (lambda: fptt_ext.LTC(init_hidden=True, size=2, conv=True), (4,), 2),
    "ALIF(size=3)": (lambda: fptt_ext.ALIF(init_hidden=True, size=3), (2,), 3),
    "LI": (lambda: fptt_ext.LI(init_hidden=True), (2, 4), None),
    "LTCNode": (lambda: LTCNode(), (2, 4), None),
    "LINode(size=3)": (lambda: LINode(size=3, liquid=False), (2,), 3),
}
MULTI_STEP = {
    "LTCNode": (lambda: LTCNode(step_mode="m"), (3, 5), None),
    "ALIFNode": (lambda: ALIFNode(step_mode="m", size=2), (3,), 2),
    "LINode": (lambda: LINode(step_mode="m"), (3, 5), None),
}
READOUTS = ("LI", "LINode")


@st.composite
def shapes(draw, ranks, size, multi_step):
    """Half the time a shape the neuron takes (sizes from 1, batch 1 included), else any shape."""
    if draw(st.booleans()):
        return draw(st.lists(st.integers(0, 4), min_size=0, max_size=6))
    rank = draw(st.sampled_from(ranks))
    shape = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    if size is not None:
        shape[1 + multi_step] = size
    return shape


def _check_neuron_output(name: str, x: torch.Tensor, out: torch.Tensor) -> None:
    assert out.shape == x.shape and out.dtype == x.dtype, (name, x.shape, out.shape, out.dtype)
    if name.startswith(READOUTS):
        assert _is_finite_float(out)
    else:
        assert bool(((out == 0) | (out == 1)).all())  # spikes


@SETTINGS
@given(name=st.sampled_from(sorted(SINGLE_STEP)), data=st.data())
def test_single_step_neurons_take_any_input_cleanly(name, data):
    make, ranks, size = SINGLE_STEP[name]
    x = data.draw(tensors(data.draw(shapes(ranks, size, multi_step=False))))
    neuron = make()
    try:
        out = neuron(x)
    except CLEAN as err:
        event(f"refused: {type(err).__name__}")
        return
    event("result")
    assert x.dim() in (2, 4) and x.shape[1] > 0 and _is_finite_float(x)
    _check_neuron_output(name, x, out)
    out2 = neuron(x)  # the state carries over to a second step
    _check_neuron_output(name, x, out2)


@SETTINGS
@given(name=st.sampled_from(sorted(MULTI_STEP)), data=st.data())
def test_multi_step_nodes_take_any_input_cleanly_and_match_single_steps(name, data):
    make, ranks, size = MULTI_STEP[name]
    x = data.draw(tensors(data.draw(shapes(ranks, size, multi_step=True))))
    node = make()
    try:
        with use_fused(False):  # the reference: SpikingJelly's loop over the plain single step
            out = node(x)
    except CLEAN as err:
        event(f"refused: {type(err).__name__}")
        return
    event("result")
    assert x.dim() in (3, 5) and x.shape[0] > 0 and x.shape[2] > 0 and _is_finite_float(x)
    _check_neuron_output(name, x, out)
    # a correct result: the same as stepping the same weights one step at a time
    functional.reset_net(node)  # (its memories hold a graph, which deepcopy refuses)
    twin = copy.deepcopy(node)
    twin.step_mode = "s"
    with use_fused(False):
        torch.testing.assert_close(out, torch.stack([twin(x_t) for x_t in x]), rtol=0, atol=0)
    # the nodes' own window loop (gates' input share for the whole window, fused step): a valid
    # result too, and in float64 the same one up to the rounding of its split products
    fast = node(x)
    _check_neuron_output(name, x, fast)
    if x.dtype == torch.float64:
        torch.testing.assert_close(fast, out)


# ----------------------------------------------------------------------------------------- trainer
N_IN, C = 3, 3


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_IN, 6), fptt_ext.LTC(init_hidden=True, size=6), nn.Linear(6, C),
                         fptt_ext.LI(init_hidden=True, size=C))


@st.composite
def targets(draw, loss: str, T: int, B: int):
    """Targets for ``loss``: mostly well formed, often not (dtype, range, shape, a list)."""
    kind = draw(st.sampled_from(["good"] * 5 + ["dtype", "shape", "list", "values"]))
    if loss == "classification":
        shape = {"shape": draw(st.sampled_from([(B, 1), (B + 1,), (), (T, B)]))}.get(kind, (B,))
        high = C + 2 if kind == "values" else C
        y = torch.randint(-1 if kind == "values" else 0, high, shape)
        y = y.to(draw(st.sampled_from([torch.float32, torch.bool]))) if kind == "dtype" else y
        if kind == "good":
            y = y.to(draw(st.sampled_from([torch.int64, torch.int32, torch.uint8])))
    elif loss == "regression_end":
        shape = {"shape": draw(st.sampled_from([(B, C + 1), (B + 1, C), (), (T, B, C)]))}.get(kind, (B, C))
        y = draw(tensors(shape, dtypes=[torch.int64] if kind == "dtype" else [torch.float32]))
    else:  # per_step: class labels [T, B] or values [T, B, C]
        labels = draw(st.booleans())
        good = (T, B) if labels else (T, B, C)
        shape = {"shape": draw(st.sampled_from([(T, B, 1), (T + 1, B), (B,), (T, B + 1, C)]))}.get(kind, good)
        y = torch.randint(0, C + 1 if kind == "values" else C, shape) if labels else draw(tensors(shape, [torch.float32]))
        y = y.to(torch.float16 if labels else torch.int64) if kind == "dtype" else y
    return y.tolist() if kind == "list" else y


# Each setting's values, good and bad; a drawn case spoils at most two of them.
GOOD = {"method": "fptt", "variant": "practical", "K": None, "k": 1, "loss": "classification", "num_classes": C,
        "nonfinite": "raise", "max_grad_norm": None, "alpha": 0.1}
OTHERS = {"method": ["bptt", "tbptt", "rtrl"], "variant": ["exact", "fast"], "K": [1, 2, 0, -1, 2.5, True],
          "k": [2, 0, -3, 1.5], "loss": ["regression_end", "per_step", "mse"], "num_classes": [None, 1, 0, 3.0, 10],
          "nonfinite": ["skip", "rais", None], "max_grad_norm": [1.0, 0.0, -1.0], "alpha": [0.5, 0.0, float("inf")]}


def _refused(s: dict) -> bool:
    """Whether a trainer built with ``s`` must refuse it (the documented rules)."""
    fptt, classification = s["method"] == "fptt", s["loss"] == "classification"
    bad_count = lambda v, none_ok: not (v is None and none_ok) and (type(v) is not int or v < 1)
    return (s["method"] not in ("fptt", "bptt", "tbptt") or bad_count(s["K"], True) or bad_count(s["k"], False)
            or s["loss"] not in ("classification", "regression_end", "per_step")
            or (classification and (type(s["num_classes"]) is not int or s["num_classes"] < 2))
            or s["nonfinite"] not in ("raise", "skip") or s["max_grad_norm"] in (0.0, -1.0)
            or (fptt and (s["variant"] not in ("practical", "exact") or s["alpha"] in (0.0, float("inf")))))


@SETTINGS
@given(spoiled=st.dictionaries(st.sampled_from(sorted(OTHERS)), st.integers(0, 5), max_size=2))
def test_trainer_settings_are_checked_when_it_is_built(spoiled):
    """A bad setting is refused by the constructor, not by the first batch (or never), and
    every setting it accepts trains."""
    s = {**GOOD, **{name: OTHERS[name][i % len(OTHERS[name])] for name, i in spoiled.items()}}
    net = _net()
    try:
        trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.05), **s)
    except CLEAN:
        event("refused")
        assert _refused(s), s
        return
    event("built")
    assert not _refused(s), s
    T, B = 4, 2
    x = torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(0))
    y = {"classification": torch.tensor([0, 2]), "regression_end": torch.rand(B, C),
         "per_step": torch.randint(0, C, (T, B))}[s["loss"]]
    if s["num_classes"] == 10 and s["loss"] == "classification":  # accepted, but not what the model outputs
        with pytest.raises(ValueError, match="num_classes=10 does not match the model's output"):
            trainer.train_batch(x, y)
        return
    result = trainer.train_batch(x, y)
    assert result.updates == len(window_ends(T, s["method"], s["K"], s["k"])) and math.isfinite(result.loss)


@settings(SETTINGS, max_examples=300)  # about one case in five gets through to a result to check
@given(
    T=st.sampled_from([0, 1, 1, 2, 3, 4]), B=st.sampled_from([0, 1, 1, 2, 3]),
    x_dtype=st.sampled_from([torch.float32] * 6 + [torch.int64, torch.bool]),
    x_special=st.sampled_from(SPECIAL + [None] * 6),
    method=st.sampled_from(["fptt", "bptt", "tbptt"]), variant=st.sampled_from(["practical", "exact"]),
    K=st.sampled_from([None, None, 1, 2, 5]), k=st.sampled_from([1, 2]),
    loss=st.sampled_from(["classification", "regression_end", "per_step"]),
    nonfinite=st.sampled_from(["raise", "skip"]), data=st.data(),
)
def test_trainer_takes_any_batch_cleanly(T, B, x_dtype, x_special, method, variant, K, k, loss, nonfinite, data):
    net = _net()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.05), method=method, K=K, k=k,
                              variant=variant, loss=loss, num_classes=C, nonfinite=nonfinite)
    x = torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(T * 7 + B))
    if x_special is not None and x.numel():
        x[-1, 0, 0] = x_special
    x = x.to(x_dtype)
    y = data.draw(targets(loss, T, B))
    before = [p.detach().clone() for p in net.parameters()]
    try:
        with warnings.catch_warnings():  # nonfinite="skip" warns about each skipped update
            warnings.simplefilter("ignore", RuntimeWarning)
            result = trainer.train_batch(x, y)
    except CLEAN as err:
        event(f"refused: {type(err).__name__}")
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # refused before any update
        return
    except FloatingPointError:
        event("refused: FloatingPointError")
        assert nonfinite == "raise"
        return
    event(f"result, {result.skipped} skipped")
    # a correct result
    assert T > 0 and B > 0 and x.is_floating_point() and _is_finite_float(x) and isinstance(y, torch.Tensor)
    assert result.outputs.shape == (T, B, C) and _is_finite_float(result.outputs)
    assert result.updates + result.skipped == len(window_ends(T, method, K, k))
    assert all(_is_finite_float(p.detach()) for p in net.parameters())
    if result.updates:
        assert math.isfinite(result.loss)
    if method == "bptt" and result.updates and loss != "per_step":
        # one update on the whole sequence: at t = T both losses are plain CE / MSE of the last output
        last = result.outputs[-1]
        expected = (torch.nn.functional.cross_entropy(last, y.long()) if loss == "classification"
                    else torch.nn.functional.mse_loss(last.reshape(y.shape), y))
        assert result.loss == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
