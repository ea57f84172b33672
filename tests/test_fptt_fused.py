"""FPTT(fused=True): the compiled updates give the foreach path's numbers, resume from its state,
and fall back to it (with a warning) where there is no compiler or compiling fails."""
import copy
import warnings

import pytest
import torch

from fptt_ext.fptt import FPTT
from fptt_ext.fptt import fused as fused_module

needs_compiler = pytest.mark.skipif(not fused_module.compiler_available(),
                                    reason="no C++ compiler for torch.compile's CPU backend")


def make_model(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def train(model, fptt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 6, generator=g, dtype=model[0].weight.dtype)
        y = torch.randint(0, 3, (8,), generator=g)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        fptt.add_regularizer_grad_()
        if fptt.variant == "exact":
            fptt.step(lambda: torch.nn.functional.cross_entropy(model(x), y))  # noqa: B023 (called at once)
        else:
            fptt.step()
        fptt.zero_grad()


def build(fused, variant="practical", dtype=torch.float32):
    model = make_model(dtype)
    return model, FPTT(model.parameters(), torch.optim.Adam(model.parameters(), lr=1e-2), variant=variant,
                       max_grad_norm=1.0, fused=fused)


@needs_compiler
@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_fused_updates_match_the_foreach_kernels(variant):
    (m_ref, ref), (m_fused, fus) = build(False, variant), build(True, variant)
    assert fus.fused and not ref.fused and "fused=True" in repr(fus)
    train(m_ref, ref, 6), train(m_fused, fus, 6)
    for p, q in zip(m_ref.parameters(), m_fused.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
        for key in ref.state[p]:
            torch.testing.assert_close(fus.state[q][key], ref.state[p][key], rtol=1e-5, atol=1e-6)
    assert max((fus.state[q]["W_bar"] - q).abs().max() for q in m_fused.parameters()) > 1e-4  # non-trivial


@needs_compiler
def test_fused_regularizer_grad_is_exactly_zero_at_the_start():
    # W == W_bar and lam == 0: the regulariser must leave the task gradient bit for bit.
    model, fptt = build(True)
    torch.nn.functional.cross_entropy(model(torch.ones(2, 6)), torch.tensor([0, 1])).backward()
    before = [p.grad.clone() for p in model.parameters()]
    fptt.add_regularizer_grad_()
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))


@needs_compiler
def test_fused_resumes_from_a_foreach_state_dict():
    (m_ref, ref), (m_fused, fus) = build(False), build(True)
    train(m_ref, ref, 3)
    m_fused.load_state_dict(m_ref.state_dict())
    fus.load_state_dict(copy.deepcopy(ref.state_dict()))  # state_dict() returns references
    train(m_ref, ref, 3, seed=2), train(m_fused, fus, 3, seed=2)
    for p, q in zip(m_ref.parameters(), m_fused.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fus.state[q]["lam"], ref.state[p]["lam"], rtol=1e-5, atol=1e-7)


def test_fused_without_a_compiler_warns_and_uses_foreach(monkeypatch):
    monkeypatch.setattr(fused_module, "compiler_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="needs a C.. compiler"):
        model, fptt = build(True)
    assert not fptt.fused
    (m_ref, ref) = build(False)
    train(model, fptt, 2), train(m_ref, ref, 2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), m_ref.parameters()))


def test_a_failed_compilation_falls_back_before_writing_anything(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def failing(*args):
        raise BackendCompilerFailed(lambda *a: None, RuntimeError("no linker"), None)

    monkeypatch.setattr(fused_module, "compiler_available", lambda: True)
    monkeypatch.setattr(fused_module, "_compiled",
                        lambda: {"regularizer_grad": failing, "practical_update": failing})
    model, fptt = build(True)
    assert fptt.fused
    m_ref, ref = build(False)
    with pytest.warns(RuntimeWarning, match="compiling the update failed"):
        train(model, fptt, 1)
    assert not fptt.fused
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, fptt, 1)
    train(m_ref, ref, 1), train(m_ref, ref, 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), m_ref.parameters()))


@needs_compiler
def test_fused_fptt_trains_an_ltc_net_like_foreach_in_float64():
    """SequenceTrainer(fused=True) on the benchmarks' LTC-SN net: float64 takes rounding out."""
    from spikingjelly.activation_based import functional

    from fptt_ext.bench.workloads import build_network, make_data
    from fptt_ext.fptt import SequenceTrainer

    weights = []
    for fused in (False, True):
        model = build_network("rmnist", hidden=(8,), seed=0).to(torch.float64)
        x, y = make_data("rmnist", 3, 2)
        with torch.no_grad():
            model(x[0].double())
        functional.reset_net(model)
        trainer = SequenceTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-3), method="fptt",
                                  loss="per_step", fused=fused)
        calls = []
        if fused:  # the trainer's steps after the first go through the fused step
            run = trainer.optimizer._fused_step.run
            trainer.optimizer._fused_step.run = lambda *a, calls=calls, run=run: calls.append(1) or run(*a)
        trainer.train_batch(x.double(), y.expand(3, -1))
        assert len(calls) == 2 * fused
        weights.append([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*weights):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-8)  # 1e-5 of a step: rounding only


# -- FusedStep: regulariser gradient, the optimizer's update and the FPTT update as one kernel ---

def train_fused_step(model, fptt, steps, seed=1, lr_after=None):
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        x = torch.randn(8, 6, generator=g, dtype=model[0].weight.dtype)
        y = torch.randint(0, 3, (8,), generator=g)
        torch.nn.functional.cross_entropy(model[2](model[1](model[0](x))) if i % 2 else model(x), y).backward()
        fptt.step(with_regularizer=True)
        fptt.zero_grad()
        if lr_after is not None and i == lr_after:
            for group in fptt.optimizer.param_groups:
                group["lr"] *= 0.5  # what an LR scheduler does


def build_step(fused, opt="adam", clip=None, **opt_kwargs):
    model = make_model(torch.float64)
    cls = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "sgd": torch.optim.SGD}[opt]
    groups = [{"params": model[0].parameters(), "lr": 2e-2}, {"params": model[2].parameters()}]
    optimizer = cls(groups, lr=1e-2, **opt_kwargs)
    return model, FPTT(model.parameters(), optimizer, max_grad_norm=clip, fused=fused)


def assert_same_training(ref, fus, m_ref, m_fused, tol=1e-12):
    for p, q in zip(m_ref.parameters(), m_fused.parameters()):
        torch.testing.assert_close(q, p, rtol=tol, atol=tol)
        for key in ref.state[p]:
            torch.testing.assert_close(fus.state[q][key], ref.state[p][key], rtol=tol, atol=tol)
        for key, value in ref.optimizer.state[p].items():
            torch.testing.assert_close(fus.optimizer.state[q][key], value, rtol=tol, atol=tol)


@needs_compiler
@pytest.mark.parametrize(("opt", "clip", "opt_kwargs"), [
    ("adam", None, {}), ("adam", 0.05, {}), ("adamax", None, {}), ("adamax", 0.05, {"weight_decay": 1e-2}),
    ("adam", None, {"weight_decay": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6})])
def test_fused_step_matches_the_separate_kernels(opt, clip, opt_kwargs, monkeypatch):
    (m_ref, ref), (m_fused, fus) = build_step(False, opt, clip, **opt_kwargs), build_step(True, opt, clip, **opt_kwargs)
    calls = []
    run = fus._fused_step.run
    monkeypatch.setattr(fus._fused_step, "run", lambda *a: calls.append(1) or run(*a))
    # model[2] only at odd steps: the first layer then gets the regulariser's gradient alone;
    # the learning rates halve after step 3 (a scheduler), and the groups' rates differ
    train_fused_step(m_ref, ref, 7, lr_after=3), train_fused_step(m_fused, fus, 7, lr_after=3)
    assert len(calls) == 6  # every step but the first, which creates the optimizer's state
    assert_same_training(ref, fus, m_ref, m_fused)
    assert max((fus.state[q]["W_bar"] - q).abs().max() for q in m_fused.parameters()) > 1e-4  # non-trivial


@needs_compiler
@pytest.mark.parametrize(("opt", "opt_kwargs"), [("adam", {"amsgrad": True}), ("adam", {"maximize": True}),
                                                 ("sgd", {"momentum": 0.9})])
def test_fused_step_leaves_other_optimizers_to_the_separate_kernels(opt, opt_kwargs):
    (m_ref, ref), (m_fused, fus) = build_step(False, opt, **opt_kwargs), build_step(True, opt, **opt_kwargs)
    train_fused_step(m_ref, ref, 4), train_fused_step(m_fused, fus, 4)
    assert fus._fused_plan is None or fus._fused_step.gather(fus._fused_plan) is None  # even with its state
    assert_same_training(ref, fus, m_ref, m_fused)


@needs_compiler
def test_fused_step_skips_a_nonfinite_gradient_without_a_trace():
    model, fptt = build_step(True)
    fptt.nonfinite = "skip"
    train_fused_step(model, fptt, 2)
    before = copy.deepcopy((list(model.parameters()), fptt.state_dict()))
    model(torch.ones(1, 6, dtype=torch.float64)).sum().backward()
    model[0].weight.grad[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        fptt.step(with_regularizer=True)
    assert fptt.skipped_steps == 1
    after = (list(model.parameters()), fptt.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(before[0], after[0]))
    assert int(after[1]["optimizer"]["state"][0]["step"]) == 2
    for i, s in before[1]["state"].items():
        assert all(torch.equal(s[k], after[1]["state"][i][k]) for k in s)


def _compile_failure():
    from torch._dynamo.exc import BackendCompilerFailed

    return BackendCompilerFailed(lambda *a: None, RuntimeError("no linker"), None)


def _train_with_fused_step_kernels(monkeypatch, adam, grad_norm, steps):
    """Train build_step(True) with the fused step's kernels replaced (the separate ones run
    eagerly) next to build_step(False); the compilation failure must warn and change no number."""
    kernels = {"regularizer_grad": fused_module._regularizer_grad, "practical_update": fused_module._practical_update,
               "adam": adam, "adamax": adam, "regularized_grad_norm": grad_norm}
    monkeypatch.setattr(fused_module, "compiler_available", lambda: True)
    monkeypatch.setattr(fused_module, "_compiled", lambda: kernels)
    (m_ref, ref), (m_fused, fus) = build_step(False), build_step(True)
    with pytest.warns(RuntimeWarning, match="compiling the fused step failed"):
        train_fused_step(m_fused, fus, steps)
    train_fused_step(m_ref, ref, steps)
    assert fus._fused_step is None
    assert_same_training(ref, fus, m_ref, m_fused)


def test_a_failed_fused_step_compilation_falls_back_before_writing_anything(monkeypatch):
    def failing(*args):
        raise _compile_failure()

    _train_with_fused_step_kernels(monkeypatch, failing, failing, 3)


def test_a_fused_step_failing_at_a_later_group_finishes_that_step_once(monkeypatch):
    # The kernel is compiled per optimizer group: here the second group's compilation fails after
    # the first group was stepped. That step must still be taken exactly once.
    def adam(*args):
        if args[0][0].shape == (3, 16):  # the second group (the last layer)
            raise _compile_failure()
        fused_module._adam_update(*args)

    _train_with_fused_step_kernels(monkeypatch, adam, fused_module._regularized_grad_norm, 4)


@needs_compiler
def test_fused_step_on_bf16_weights_agrees_to_bf16_rounding():
    def build(fused):
        model = make_model(torch.bfloat16)
        return model, FPTT(model.parameters(), torch.optim.Adam(model.parameters(), lr=1e-2), fused=fused)

    (m_ref, ref), (m_fused, fus) = build(False), build(True)
    train_fused_step(m_ref, ref, 6), train_fused_step(m_fused, fus, 6)
    for p, q in zip(m_ref.parameters(), m_fused.parameters()):
        assert q.dtype == fus.optimizer.state[q]["exp_avg"].dtype == torch.bfloat16
        torch.testing.assert_close(q, p, rtol=0, atol=8e-3)  # a few bf16 steps at |W| < 1



@needs_compiler
def test_fused_step_follows_the_learning_rate_after_load_state_dict():
    # Optimizer.load_state_dict replaces the param-group dicts that LR schedulers then change
    (m_ref, ref), (m_fused, fus) = build_step(False), build_step(True)
    train_fused_step(m_ref, ref, 3), train_fused_step(m_fused, fus, 3)
    m_new, new = build_step(True)
    m_new.load_state_dict(m_fused.state_dict())
    new.load_state_dict(copy.deepcopy(fus.state_dict()))
    train_fused_step(m_ref, ref, 3, seed=2, lr_after=0), train_fused_step(m_new, new, 3, seed=2, lr_after=0)
    assert new._fused_step is not None
    assert_same_training(ref, new, m_ref, m_new)
