"""Training through torch.compile: the package's networks compile to one graph, a compiled
SequenceTrainer gives the uncompiled one's numbers, and it falls back (with a warning) where
there is no compiler or compiling fails."""
import json
import warnings

import pytest
import torch
from spikingjelly.activation_based import functional

import fptt_ext
from fptt_ext import SequenceTrainer
from fptt_ext.fptt import compiled as compiled_module
from fptt_ext.fptt.fused import compiler_available
from fptt_ext.zoo import create_model
from fptt_ext.zoo.srnn import AddTaskSNN

needs_compiler = pytest.mark.skipif(not compiler_available(), reason="no C++ compiler for torch.compile's CPU backend")


def graph_breaks(model, *args) -> int:
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(*args)
    assert explanation.graph_count >= 1
    return explanation.graph_break_count


@pytest.mark.parametrize("name, kwargs, shape", [
    ("ostl_rmnist", {"backend": "snntorch", "hidden": (8, 8)}, (2, 784)),
    ("ostl_rmnist", {"backend": "spikingjelly", "hidden": (8, 8)}, (2, 784)),
    ("scnn_fmnist_narrow", {"backend": "snntorch"}, (2, 1, 28, 28)),
    ("scnn_fmnist_narrow", {"backend": "spikingjelly"}, (2, 1, 28, 28)),
    ("srnn_smnist5k", {"hidden": 8}, (2, 1)),
])
def test_zoo_nets_compile_to_one_graph_per_step(name, kwargs, shape):
    net = create_model(name, **kwargs)
    x = torch.rand(shape)
    net(x)  # the state exists, as in every step but a sequence's first
    assert graph_breaks(net, x) == 0


def test_a_multi_step_spikingjelly_net_and_the_addtask_net_compile_to_one_graph():
    net = create_model("ostl_rmnist", backend="spikingjelly", hidden=(8, 8))
    functional.set_step_mode(net, "m")
    assert graph_breaks(net, torch.rand(3, 2, 784)) == 0
    net = AddTaskSNN("ltc", hidden=8)
    net(torch.rand(2, 2))
    assert graph_breaks(net, torch.rand(2, 2)) == 0


def tiny_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), fptt_ext.LTC(init_hidden=True, threshold=0.05),
                              torch.nn.Linear(16, 3), fptt_ext.LI(init_hidden=True)).double()
    net(torch.zeros(1, 4, dtype=torch.float64))
    return net


def batches(n=2, T=6, B=5):
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(T, B, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (B,), generator=g))
            for _ in range(n)]


def train(compile, n=2, **kwargs):
    net = tiny_net()
    trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 1e-2), method="fptt", K=3,
                              loss="classification", num_classes=3, max_grad_norm=1.0, compile=compile, **kwargs)
    losses = [trainer.train_batch(x, y).loss for x, y in batches(n)]
    return net, trainer, losses


@needs_compiler
def test_compiled_training_gives_the_uncompiled_numbers_in_float64():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net, trainer, losses = train(True)
    assert trainer.compiled and counters["stats"]["unique_graphs"] >= 1  # it did run compiled graphs
    ref, _, ref_losses = train(False)
    assert losses == pytest.approx(ref_losses, rel=1e-9)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    x, _ = batches(1)[0]
    torch.testing.assert_close(trainer.predict(x), SequenceTrainer(ref, torch.optim.SGD(ref.parameters(), 0.1),
                                                                   loss="classification", num_classes=3).predict(x))


def test_without_a_compiler_it_warns_and_trains_uncompiled(monkeypatch):
    monkeypatch.setattr(compiled_module, "compiler_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="needs a C\\+\\+ compiler"):
        net, trainer, losses = train(True)
    assert not trainer.compiled
    ref, _, ref_losses = train(False)
    assert losses == ref_losses
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters()))


def test_a_failed_compilation_falls_back_before_the_state_changes(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def failing_compile(model):
        def call(*args):
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("no linker"), None)
        return call

    monkeypatch.setattr(compiled_module, "compiler_available", lambda: True)
    monkeypatch.setattr(compiled_module.torch, "compile", failing_compile)
    with pytest.warns(RuntimeWarning, match="compiling the model failed"):
        net, trainer, losses = train(True, n=1)
    assert not trainer.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = batches(2)[1]
        losses.append(trainer.train_batch(x, y).loss)
    ref, _, ref_losses = train(False)
    assert losses == ref_losses
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters()))


def test_the_trainer_still_refuses_nan_input_when_compiling():
    # the modules skip their own check while Dynamo traces; the trainer's comes first
    net = tiny_net()
    trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters()), loss="classification", num_classes=3,
                              compile=True)
    x, y = batches(1)[0]
    x[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        trainer.train_batch(x, y)


def test_the_compile_flags_reach_the_trainer(tmp_path, monkeypatch):
    from fptt_ext.cli import main

    seen = []  # the flags are tested here, not the compiler

    class Recorder:
        def __init__(self, model):
            seen.append(type(model).__name__)
            self.model, self.active = model, False

        def __call__(self, *args):
            return self.model(*args)

    monkeypatch.setattr("fptt_ext.fptt.loop.CompiledForward", Recorder)
    run = tmp_path / "train"
    assert main(["train", "--dataset", "mnist5k", "--encoding", "rate", "--T", "2", "--hidden", "8",
                 "--batch-size", "50", "--epochs", "1", "--limit-train", "50", "--limit-test", "20",
                 "--no-progress", "--out", str(run), "--compile"]) == 0
    assert json.loads((run / "config.json").read_text())["compile"] is True
    run = tmp_path / "addtask"
    assert main(["addtask", "--T", "4", "--iterations", "1", "--batch-size", "2", "--hidden", "4",
                 "--no-progress", "--out", str(run), "--compile"]) == 0
    assert seen == ["OSTLNet", "AddTaskSNN"]
