"""The online training loop (fptt_ext.fptt.loop.SequenceTrainer; docs/concepts/fptt.md).

Covers: window_ends; FPTT-K=1 == BPTT + regulariser; state detaching at window
ends; snnTorch / SpikingJelly (multi-step) / fptt_ext / nn.LSTM networks; the
three loss modes; the "exact" variant's replay closure; checkpoint + resume in a
new process; bad input and non-finite losses.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import fptt_ext
from fptt_ext.floatmode import flush_subnormals, flushes_subnormals
from fptt_ext.fptt import FPTT, ClassificationLoss, SequenceTrainer, StatefulModules, window_ends
from fptt_ext.fptt.fused import compiler_available
from fptt_ext.fptt.loop import METHODS
from fptt_ext.spikingjelly import LTCNode

sys.path.insert(0, str(Path(__file__).parent))
import _resume_worker as resume_worker

ROOT = Path(__file__).resolve().parents[1]
T, B, N_IN, HIDDEN, C = 8, 12, 4, 16, 3



def _data(T=T, B=B, dtype=torch.float32, seed=0):
    """Classes separable from every step's input."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(B) % C
    centers = 1.5 * torch.randn(C, N_IN, generator=g)
    x = centers[y] + 0.3 * torch.randn(T, B, N_IN, generator=g)
    return x.to(dtype), y


def ltc_net(dtype=torch.float64, hidden=HIDDEN, readout_li=False):
    torch.manual_seed(0)
    layers = [nn.Linear(N_IN, hidden), fptt_ext.LTC(size=hidden, init_hidden=True), nn.Linear(hidden, C)]
    if readout_li:
        layers.append(fptt_ext.LI(size=C, init_hidden=True))
    return nn.Sequential(*layers).to(dtype)


def leaky_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_IN, HIDDEN), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(HIDDEN, C))


def sj_net():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(N_IN, HIDDEN), neuron.LIFNode(tau=2.0), layer.Linear(HIDDEN, HIDDEN),
                        LTCNode(size=HIDDEN), layer.Linear(HIDDEN, C))
    functional.set_step_mode(net, "m")
    return net


class LSTMNet(nn.Module):
    """``nn.LSTM`` with explicit state: ``forward(x_t, state) -> (out, state)``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm, self.fc = nn.LSTM(N_IN, HIDDEN), nn.Linear(HIDDEN, C)

    def forward(self, x_t, state):
        out, state = self.lstm(x_t.unsqueeze(0), state)
        return self.fc(out[0]), state


class ExplicitState(nn.Module):
    """A module-state network driven through ``explicit_state=True``: the state
    passed in replaces the neurons' state, the state returned is theirs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.neurons = inner, StatefulModules(inner)

    def forward(self, x_t, state):
        if state is None:
            self.neurons.reset()
        else:
            self.neurons.set(state)
        return self.inner(x_t), self.neurons.get()


def _fptt_state(trainer, model):
    return {n: {"W": p.detach().clone(), **{k: v.clone() for k, v in trainer.optimizer.state[p].items()}}
            for n, p in model.named_parameters()}


def _assert_states_equal(a, b, **tol):
    assert a.keys() == b.keys()
    for n in a:
        for k in a[n]:
            torch.testing.assert_close(a[n][k], b[n][k], msg=f"{n}.{k}", **tol)


# ----------------------------------------------------------------------------
# windows
# ----------------------------------------------------------------------------

def test_window_ends():
    assert window_ends(5, "fptt") == [1, 2, 3, 4, 5]  # K = T by default
    assert window_ends(5, "fptt", K=5) == [1, 2, 3, 4, 5]
    assert window_ends(5, "fptt", K=1) == [5]
    assert window_ends(7, "fptt", K=3) == [3, 5, 7]
    assert window_ends(8, "fptt", K=4) == [2, 4, 6, 8]
    assert window_ends(9, "bptt") == [9]
    assert window_ends(7, "tbptt", k=3) == [3, 6, 7]
    assert window_ends(6, "tbptt", k=3) == [3, 6]
    assert window_ends(4, "tbptt", k=10) == [4]
    assert window_ends(4, "tbptt") == [1, 2, 3, 4]
    for Tn in range(1, 30):
        for K in range(1, Tn + 1):
            ends = window_ends(Tn, "fptt", K=K)
            assert len(ends) == K and ends[-1] == Tn and all(a < b for a, b in itertools.pairwise(ends))
            lengths = [e - s for s, e in zip([0] + ends, ends)]
            assert max(lengths) - min(lengths) <= 1  # windows as equal as possible
    for bad in [{"method": "fptt", "K": 0}, {"method": "fptt", "K": 6}, {"method": "tbptt", "k": 0}, {"method": "rtrl"}]:
        with pytest.raises(ValueError):
            window_ends(5, **bad)


@pytest.mark.parametrize("method, kw", [("fptt", {}), ("fptt", {"K": 3}), ("bptt", {}), ("tbptt", {"k": 3})])
def test_one_update_per_window_with_window_inputs(method, kw):
    """Module nets get one step per call; multi-step SpikingJelly nets one window [L, B, ...] per call."""
    x, y = _data()
    ends = window_ends(T, method, **kw)
    for net in (ltc_net(torch.float32), sj_net()):
        calls, steps = [], []
        net[0].register_forward_pre_hook(lambda m, args, calls=calls: calls.append(args[0].shape[0]))
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        opt.register_step_pre_hook(lambda o, a, k, steps=steps: steps.append(1))
        trainer = SequenceTrainer(net, opt, method=method, loss="classification", num_classes=C, **kw)
        result = trainer.train_batch(x, y)
        assert result.updates == len(steps) == len(ends) and result.skipped == 0
        assert result.outputs.shape == (T, B, C) and not result.outputs.requires_grad
        if isinstance(net[0], layer.Linear):  # multi-step: [L, B, N_IN] per window
            assert calls == [e - s for s, e in zip([0] + ends, ends)]
        else:  # single step: [B, N_IN] per step
            assert calls == [B] * T


# ----------------------------------------------------------------------------
# FPTT-K = 1 is BPTT plus the regulariser
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.skipif(
    not compiler_available(), reason="no C++ compiler for torch.compile"))])
def test_fptt_k1_equals_bptt_plus_regulariser(fused):
    x, y = _data(dtype=torch.float64)
    x2, y2 = _data(dtype=torch.float64, seed=1)
    lr, alpha = 0.5, 0.1
    bptt_net, fptt_net = ltc_net(), ltc_net()
    bptt = SequenceTrainer(bptt_net, torch.optim.SGD(bptt_net.parameters(), lr), method="bptt",
                           loss="classification", num_classes=C)
    fptt = SequenceTrainer(fptt_net, torch.optim.SGD(fptt_net.parameters(), lr), method="fptt", K=1,
                           loss="classification", num_classes=C, alpha=alpha, fused=fused)
    assert fptt.optimizer.fused == fused
    w0 = [p.detach().clone() for p in bptt_net.parameters()]
    # First batch: W == W_bar and lam == 0, so the regulariser's gradient is 0 -> identical SGD step.
    rb, rf = bptt.train_batch(x, y), fptt.train_batch(x, y)
    assert rb.updates == rf.updates == 1
    assert rf.loss == rb.loss == pytest.approx(F.cross_entropy(rb.outputs[-1], y).item(), abs=1e-12)
    for pb, pf, p0 in zip(bptt_net.parameters(), fptt_net.parameters(), w0):
        assert torch.equal(pb, pf)
        assert not torch.equal(pb, p0)
    # Second batch: same weights, so FPTT's step is BPTT's step plus lr * grad R, and
    # grad R = alpha (W - W_bar) - lam with the FPTT state after batch 1.
    w1 = [p.detach().clone() for p in fptt_net.parameters()]
    reg_grad = [alpha * (p - fptt.optimizer.state[p]["W_bar"]) - fptt.optimizer.state[p]["lam"]
                for p in fptt_net.parameters()]
    assert max(g.abs().max() for g in reg_grad) > 1e-6  # the regulariser is active now
    bptt.train_batch(x2, y2), fptt.train_batch(x2, y2)
    for pb, pf, p1, gr in zip(bptt_net.parameters(), fptt_net.parameters(), w1, reg_grad):
        torch.testing.assert_close(pf, pb - lr * gr, rtol=0, atol=1e-12)
        assert not torch.equal(pf, p1)


# ----------------------------------------------------------------------------
# the state is detached at every window end
# ----------------------------------------------------------------------------

class _GradProbe(nn.Module):
    """Per-step loss that records which input steps each loss depends on."""

    per_step_target = True

    def __init__(self, x):
        super().__init__()
        self.x, self.reach = x, {}

    def forward(self, out, y_t, t):
        (g,) = torch.autograd.grad(out.sum(), self.x, retain_graph=True, allow_unused=True)
        self.reach[t] = [] if g is None else [s for s in range(self.x.shape[0]) if g[s].abs().sum() > 0]
        return F.cross_entropy(out, y_t)

    def update(self, out, y, t):
        pass


@pytest.mark.parametrize("K", [T, 4])
def test_graph_does_not_reach_earlier_windows(K):
    x, y = _data(dtype=torch.float64)
    x.requires_grad_(True)
    ys = y.expand(T, B)
    net = ltc_net(readout_li=True)
    states_have_graph = []
    net[1].register_forward_pre_hook(
        lambda m, args: states_have_graph.append(any(s.grad_fn is not None for s in (m.mem, m.b, m.spk))))
    probe = _GradProbe(x)
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), lr=0.1), method="fptt", K=K, loss=probe)
    trainer.train_batch(x, ys)
    trainer.train_batch(x, ys)  # the second batch must not reach into the first either
    ends = window_ends(T, "fptt", K=K)
    starts = [0] + ends[:-1]
    # 1-based step t of window [s, e): its output depends on input steps s .. t-1 (0-based) only
    for s, e in zip(starts, ends):
        for t in range(s + 1, e + 1):
            assert probe.reach[t] == list(range(s, t)), (t, probe.reach[t])
    # the neuron's state carries no graph at the start of a window, and does inside one
    expect = [step not in starts for step in range(T)]
    assert states_have_graph == expect + expect


# ----------------------------------------------------------------------------
# networks: snnTorch, fptt_ext, SpikingJelly multi-step, nn.LSTM
# ----------------------------------------------------------------------------

NETS = {
    "snntorch_leaky": (leaky_net, {}),
    "fptt_ext_ltc": (lambda: ltc_net(torch.float32, readout_li=True), {}),
    "spikingjelly_multistep": (sj_net, {}),
    "lstm_explicit": (LSTMNet, {"explicit_state": True}),
}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_trains_each_network_kind(name, method):
    make, kw = NETS[name]
    x, y = _data()
    net = make()
    trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 1e-2), method=method,
                              loss="classification", num_classes=C, **kw)
    before = trainer.predict(x)
    assert torch.equal(before, trainer.predict(x))  # the state is reset between calls
    # a smaller batch after a larger one: the state is re-sized, each sample is independent
    torch.testing.assert_close(trainer.predict(x[:, :5]), before[:, :5])
    w0 = [p.detach().clone() for p in net.parameters()]
    losses = [trainer.train_batch(x, y).loss for _ in range(12)]
    assert all(math.isfinite(v) for v in losses)
    assert all(not torch.equal(p, q) for p, q in zip(net.parameters(), w0) if p.requires_grad)
    after = trainer.predict(x)
    assert torch.equal(after, trainer.predict(x))
    assert F.cross_entropy(after[-1], y) < F.cross_entropy(before[-1], y) - 0.05
    assert not net.training  # predict() leaves eval mode; train_batch switches back
    trainer.train_batch(x, y)
    assert net.training


@pytest.mark.parametrize("name", list(NETS))
def test_state_reset_between_batches(name):
    """With lr = 0 the weights stay put, so every batch must give the same outputs:
    train_batch and predict start from the reset state each time."""
    make, kw = NETS[name]
    x, y = _data()
    net = make()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), lr=0.0), method="fptt",
                              loss="classification", num_classes=C, **kw)
    first = trainer.train_batch(x, y).outputs
    torch.testing.assert_close(trainer.train_batch(x, y).outputs, first, rtol=0, atol=0)
    torch.testing.assert_close(trainer.predict(x), first, rtol=0, atol=0)


# ----------------------------------------------------------------------------
# loss modes
# ----------------------------------------------------------------------------

def test_classification_loss_values_and_q_update():
    Tn = 4
    loss = ClassificationLoss(num_classes=C, T=Tn)
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, C, generator=g), torch.tensor([0, 1, 2, 0, 1, 1])
    ce = F.cross_entropy(logits, y)
    assert loss(logits, y, Tn) == pytest.approx(ce.item(), abs=1e-6)  # t = T: plain CE
    uniform_div = -F.log_softmax(logits, -1).mean(-1).mean()  # Q uniform at start
    for t in range(1, Tn):
        expect = t / Tn * ce + (1 - t / Tn) * uniform_div
        assert loss(logits, y, t) == pytest.approx(expect.item(), abs=1e-6)
    # Q_t(. | y) moves towards the batch's mean predicted distribution of class y and stays a distribution
    p = F.softmax(logits, -1)
    target = torch.stack([p[y == c].mean(0) for c in range(C)])
    q_before = loss.Q[1].clone()
    for _ in range(30):
        loss.update(logits, y, t=2)
        assert torch.all(loss.Q >= 0)
        torch.testing.assert_close(loss.Q.sum(-1), torch.ones(Tn, C))
    assert (loss.Q[1] - target).abs().max() < 0.05 < (q_before - target).abs().max()
    assert torch.equal(loss.Q[0], torch.full((C, C), 1 / C))  # other steps untouched
    # an unseen class keeps its row
    loss2 = ClassificationLoss(num_classes=C, T=Tn)
    loss2.update(logits[:2], torch.tensor([0, 0]), t=1)
    assert torch.equal(loss2.Q[0, 1:], torch.full((C - 1, C), 1 / C))
    assert not torch.equal(loss2.Q[0, 0], torch.full((C,), 1 / C))
    # with Q updated the loss at t < T uses it
    q = loss.Q[1][y]
    expect = 0.5 * ce - 0.5 * (q * F.log_softmax(logits, -1)).sum(-1).mean()
    assert loss(logits, y, 2) == pytest.approx(expect.item(), abs=1e-6)


@pytest.mark.parametrize("divergence,weight", [("uniform", 1.0), ("uniform", 0.1), ("none", 1.0), ("running", 0.5)])
def test_classification_loss_divergence_options(divergence, weight):
    Tn = 4
    loss = ClassificationLoss(num_classes=C, T=Tn, divergence=divergence, divergence_weight=weight)
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(6, C, generator=g), torch.tensor([0, 1, 2, 0, 1, 1])
    logp = F.log_softmax(logits, -1)
    ce = F.nll_loss(logp, y)
    for _ in range(5):
        loss.update(logits, y, t=1)  # moves Q only for "running"
    q = loss.Q[0][y] if divergence == "running" else torch.full((6, C), 1 / C)
    div = 0.0 if divergence == "none" else -(q * logp).sum(-1).mean()
    expect = 0.25 * ce + 0.75 * weight * div
    assert loss(logits, y, 1) == pytest.approx(float(expect), abs=1e-6)
    assert loss(logits, y, Tn) == pytest.approx(ce.item(), abs=1e-6)  # t = T: CE alone in every mode
    assert torch.equal(loss.Q[0], torch.full((C, C), 1 / C)) == (divergence != "running")


def test_classification_loss_options_through_trainer():
    x, y = _data(dtype=torch.float64)
    net = ltc_net()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.1), loss="classification", num_classes=C,
                              loss_options={"divergence": "none"})
    r = trainer.train_batch(x, y)
    expect = torch.stack([t / T * F.cross_entropy(r.outputs[t - 1], y) for t in range(1, T + 1)]).mean()
    assert r.loss == pytest.approx(expect.item(), abs=1e-10)
    with pytest.raises(ValueError, match="divergence must be one of"):
        ClassificationLoss(C, T, divergence="kl")
    with pytest.raises(ValueError, match="divergence_weight"):
        ClassificationLoss(C, T, divergence_weight=-1)


def test_regression_end_loss_window_weighting():
    from fptt_ext.fptt import RegressionEndLoss

    loss = RegressionEndLoss(T=1000, weighting="window", K=10)  # the authors' (p + 1/PARTS)
    assert [round(loss.weight(t), 6) for t in range(100, 1001, 100)] == [p + 0.1 for p in range(10)]
    assert RegressionEndLoss(T=8).weight(2) == 0.25
    with pytest.raises(ValueError, match="needs the number of windows K"):
        RegressionEndLoss(T=10, weighting="window")
    with pytest.raises(ValueError, match="weighting must be"):
        RegressionEndLoss(T=10, weighting="linear")


def test_classification_through_trainer():
    x, y = _data(dtype=torch.float64)
    net = ltc_net()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.1), loss="classification", num_classes=C)
    r = trainer.train_batch(x, y)  # first batch: Q uniform, each step's loss from its own (pre-update) output
    per_step = []
    uniform = torch.tensor(1 / C, dtype=torch.float32).double()  # Q is a float32 buffer
    for t in range(1, T + 1):
        logp = F.log_softmax(r.outputs[t - 1], -1)
        per_step.append(t / T * F.nll_loss(logp, y) + (1 - t / T) * -(uniform * logp).sum(-1).mean())
    assert r.loss == pytest.approx(torch.stack(per_step).mean().item(), abs=1e-10)
    Q = trainer.loss_fn.Q
    assert Q.shape == (T, C, C) and torch.all(Q >= 0)
    torch.testing.assert_close(Q.sum(-1), torch.ones(T, C))
    for t in range(T):  # Q_t moved towards the predictions of step t
        p = F.softmax(r.outputs[t].float(), -1)
        target = torch.stack([p[y == c].mean(0) for c in range(C)])
        assert (Q[t] - target).abs().sum() < (torch.full((C, C), 1 / C) - target).abs().sum()


@pytest.mark.parametrize("method", ["fptt", "bptt", "tbptt"])
def test_per_step_loss(method):
    x, y = _data(dtype=torch.float64)
    ys = (y + torch.arange(T).view(T, 1)) % C  # a different target at every step
    net = ltc_net()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.1), method=method, k=3, loss="per_step")
    w0 = [p.detach().clone() for p in net.parameters()]
    r = trainer.train_batch(x, ys)
    if method == "bptt":  # the single update's loss is the mean over all steps
        expect = torch.stack([F.cross_entropy(r.outputs[t], ys[t]) for t in range(T)]).mean()
        assert r.loss == pytest.approx(expect.item(), abs=1e-10)
    if method == "fptt":  # one update per step on that step's loss (outputs from before each update)
        expect = torch.stack([F.cross_entropy(r.outputs[t], ys[t]) for t in range(T)]).mean()
        assert r.updates == T and r.loss == pytest.approx(expect.item(), abs=1e-10)
    assert not torch.equal(next(net.parameters()), w0[0])
    # float per-step targets -> MSE
    yf = torch.randn(T, B, C, dtype=torch.float64)
    r = trainer.train_batch(x, yf)
    assert math.isfinite(r.loss)


@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_regression_end_loss(method):
    x, _ = _data(dtype=torch.float64)
    target = torch.randn(B, C, dtype=torch.float64)
    net = ltc_net()
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.01), method=method, loss="regression_end")
    r = trainer.train_batch(x, target)
    if method == "fptt":
        expect = torch.stack([(t + 1) / T * F.mse_loss(r.outputs[t], target) for t in range(T)]).mean()
    else:
        expect = F.mse_loss(r.outputs[-1], target)
    assert r.loss == pytest.approx(expect.item(), abs=1e-10)
    losses = [trainer.train_batch(x, target).loss for _ in range(15)]
    assert losses[-1] < r.loss


# ----------------------------------------------------------------------------
# FPTT "exact" through the trainer
# ----------------------------------------------------------------------------

def _exact_net(kind):
    if kind == "ltc":
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.Dropout(0.3), fptt_ext.LTC(size=HIDDEN, init_hidden=True),
                             nn.Linear(HIDDEN, C)).double()
    return sj_net().double()


@pytest.mark.parametrize("kind", ["ltc", "spikingjelly"])
def test_exact_variant_replay_closure(kind):
    """closure() recomputes the step loss at the updated weights from the pre-window
    state and random numbers; W_bar's update uses its gradient."""
    x, y = _data(dtype=torch.float64)
    net = _exact_net(kind)
    neurons = StatefulModules(net)
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.3), method="fptt", variant="exact",
                              loss="classification", num_classes=C)
    pre, hand_mode = {}, [False]

    def record(module, args):  # the state and RNG before each window (K = T: each step)
        if torch.is_grad_enabled() and not hand_mode[0]:
            pre["states"] = [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                             for s in neurons.get()]
            pre["rng"] = torch.get_rng_state()
            pre.setdefault("x", []).append(args[0])

    net.register_forward_pre_hook(record)
    fptt, step = trainer.optimizer, trainer.optimizer.step
    checked = []

    def spy_step(closure=None, **kwargs):
        assert closure is not None
        states, rng, x_t = pre["states"], pre["rng"], pre["x"][-1]
        t = len(pre["x"])
        w_bar_old = {p: fptt.state[p]["W_bar"].clone() for p in net.parameters()}
        closure_loss = step(closure, **kwargs)
        pre["x"].pop()  # the replay went through the hook too
        post = neurons.get()
        # by hand: same input, same pre-step state, same dropout mask, updated weights
        neurons.set(states)
        hand_mode[0] = True
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng)
            out = net(x_t)
        hand_mode[0] = False
        out = out[-1] if kind != "ltc" else out
        hand = trainer.loss_fn(out, y, t)
        grads = torch.autograd.grad(hand, list(net.parameters()))
        neurons.set(post)
        assert closure_loss is not None and torch.equal(closure_loss, hand.detach())
        for p, g in zip(net.parameters(), grads):
            torch.testing.assert_close(fptt.state[p]["grad_prev"], g, rtol=0, atol=1e-12)
            torch.testing.assert_close(fptt.state[p]["W_bar"], (w_bar_old[p] + p.detach()) / 2 - g / (2 * 0.1),
                                       rtol=0, atol=1e-12)
        checked.append(t)
        return closure_loss

    fptt.step = spy_step
    for _ in range(2):
        pre.clear()
        trainer.train_batch(x, y)
    assert checked == list(range(1, T + 1)) * 2


def test_exact_variant_continues_from_the_windows_forward():
    """The replay runs at the new weights; the next window must still start from the
    state of the forward that produced the outputs - the same for module-held and
    explicit state (it did not: module state was left at the replay's state)."""
    x, y = _data(dtype=torch.float64)
    mod, expl = ltc_net(), ExplicitState(ltc_net())
    tm = SequenceTrainer(mod, torch.optim.SGD(mod.parameters(), 0.5), variant="exact", loss="classification",
                         num_classes=C)
    te = SequenceTrainer(expl, torch.optim.SGD(expl.parameters(), 0.5), variant="exact", loss="classification",
                         num_classes=C, explicit_state=True)
    for _ in range(2):
        rm, re_ = tm.train_batch(x, y), te.train_batch(x, y)
        torch.testing.assert_close(rm.outputs, re_.outputs, rtol=0, atol=0)
        assert rm.loss == re_.loss
    for p, q in zip(mod.parameters(), expl.parameters()):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------
# checkpoint mid-epoch, resume in a new process
# ----------------------------------------------------------------------------

def test_resume_in_new_process(tmp_path):
    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "resumed.pt"
    first = resume_worker.save(ckpt)  # (sets one thread, as does the module fixture)
    uninterrupted = resume_worker.run()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, resume_worker.__file__, str(ckpt), str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(out, weights_only=True)
    assert first + resumed["losses"] == uninterrupted["losses"]
    for k, v in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert resumed["fptt"].keys() == uninterrupted["fptt"].keys()
    for i, s in uninterrupted["fptt"].items():
        assert s.keys() == {"W_bar", "lam"}
        for k, v in s.items():
            assert torch.equal(resumed["fptt"][i][k], v), (i, k)
    assert torch.equal(resumed["Q"], uninterrupted["Q"])


# ----------------------------------------------------------------------------
# bad input, non-finite losses
# ----------------------------------------------------------------------------

def _trainer(**kw):
    net = ltc_net()
    return net, SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.1), **kw)


def test_bad_input():
    x, y = _data(dtype=torch.float64)
    _, trainer = _trainer(loss="classification", num_classes=C)
    with pytest.raises(ValueError, match="empty"):
        trainer.train_batch(x[:0], y)
    with pytest.raises(ValueError, match="empty"):
        trainer.predict(x[:0])
    with pytest.raises(TypeError, match="floating"):
        trainer.train_batch(x.long(), y)
    with pytest.raises(TypeError, match="floating"):
        trainer.predict(x.long())
    with pytest.raises(ValueError, match="batch"):
        trainer.train_batch(x, y[:-1])
    _, per_step = _trainer(loss="per_step")
    ys = y.expand(T, B)
    with pytest.raises(ValueError, match=r"T=8"):
        per_step.train_batch(x, ys[:-1])
    with pytest.raises(ValueError):
        per_step.train_batch(x, ys[:, :-1])
    with pytest.raises(ValueError):
        SequenceTrainer(ltc_net(), torch.optim.SGD(ltc_net().parameters(), 0.1), method="rtrl")
    net = ltc_net()
    opt = torch.optim.SGD(net.parameters(), 0.1)
    with pytest.raises(ValueError):  # BPTT takes the plain optimizer
        SequenceTrainer(net, FPTT(net.parameters(), opt), method="bptt")


def _weights(net):
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("method", ["fptt", "bptt", "tbptt"])
def test_bad_targets_get_clear_errors(method):
    """What torch would report as a RuntimeError, IndexError or AttributeError deep in the
    loss is refused up front, naming what was expected; nothing is updated."""
    x, y = _data(dtype=torch.float64)
    net, trainer = _trainer(method=method, loss="classification", num_classes=C)
    w0 = _weights(net)
    cases = [
        (y.double(), TypeError, r"class labels must be integers \(torch.long\), got dtype torch.float64"),
        (y.tolist(), TypeError, r"targets y must be a torch.Tensor, got list; convert it with torch.tensor\(y\)"),
        (torch.where(y == 0, C, y), ValueError, rf"class labels must be in \[0, num_classes={C}\), got values from 1 to {C}"),
        (y - 1, ValueError, rf"must be in \[0, num_classes={C}\), got values from -1 to {C - 2}"),
        (y.view(B, 1), ValueError, rf"one class label per sequence, shape \[B={B}\], got shape \({B}, 1\)"),
        (None, TypeError, "got NoneType"),
    ]
    for bad, err, msg in cases:
        with pytest.raises(err, match=msg):
            trainer.train_batch(x, bad)
    # the number of classes the model outputs is not num_classes
    _, five = _trainer(method=method, loss="classification", num_classes=5)
    with pytest.raises(ValueError, match=rf"num_classes=5 does not match the model's output: it gives shape \({B}, {C}\)"):
        five.train_batch(x, y)
    # a regression target of the wrong shape
    _, reg = _trainer(method=method, loss="regression_end")
    with pytest.raises(ValueError, match=rf"target has shape \({B}, {C + 1}\), but the model's output at each step "
                                         rf"has shape \({B}, {C}\)"):
        reg.train_batch(x, torch.zeros(B, C + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="regression targets must be floating point, got dtype torch.int64"):
        reg.train_batch(x, y)
    # per-step targets of the wrong size per step
    _, per_step = _trainer(method=method, loss="per_step")
    with pytest.raises(ValueError, match=rf"per-step targets of shape \({B}, 1\) per step do not fit"):
        per_step.train_batch(x, torch.zeros(T, B, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"class labels must be in \[0, num_classes={C}\)"):
        per_step.train_batch(x, torch.full((T, B), C))
    assert all(torch.equal(a, b) for a, b in zip(w0, _weights(net)))
    # integer labels of another width are fine, and train as torch.long ones do
    ref_net, ref = _trainer(method=method, loss="classification", num_classes=C)
    r32, r64 = trainer.train_batch(x, y.int()), ref.train_batch(x, y)
    assert r32.loss == r64.loss and all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref_net)))


def test_bad_settings_are_refused_at_construction():
    net = ltc_net()
    opt = torch.optim.SGD(net.parameters(), 0.1)
    for kw, msg in [({"K": 0}, "K must be None or an int >= 1, got 0"), ({"K": 2.5}, "K must be None or an int"),
                    ({"k": 0}, "k must be an int >= 1, got 0"),
                    ({"loss": "classification"}, "num_classes must be an int >= 1, got None"),
                    ({"loss": "classification", "num_classes": 1}, "num_classes >= 2, got 1"),
                    ({"loss": "ce"}, "unknown loss 'ce'"), ({"max_grad_norm": 0}, "max_grad_norm must be None or > 0")]:
        with pytest.raises(ValueError, match=msg):
            SequenceTrainer(net, opt, **{"loss": "regression_end", **kw})
    for method in METHODS:  # "rais" would have silently meant "skip" for BPTT and TBPTT
        with pytest.raises(ValueError, match=r"nonfinite must be one of \('raise', 'skip'\), got 'rais'"):
            SequenceTrainer(net, opt, method=method, loss="regression_end", nonfinite="rais")
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        SequenceTrainer(net, "adam", method="bptt", loss="regression_end")
    with pytest.raises(TypeError, match="loss must be one of"):
        SequenceTrainer(net, opt, loss=F.mse_loss)


def test_classification_q_is_kept_per_sequence_length(tmp_path):
    """Batches of another length use their own Q_t; the running estimate of the first length
    survives them (it used to be re-created, uniform, whenever T changed)."""
    x, y = _data(dtype=torch.float64)
    _, trainer = _trainer(loss="classification", num_classes=C)
    trainer.train_batch(x, y)
    q8 = trainer.loss_fn.Q.clone()
    assert not torch.equal(q8, torch.full_like(q8, 1 / C))
    trainer.train_batch(x[:5], y)
    assert trainer.loss_fn.Q.shape == (5, C, C)
    assert torch.equal(trainer._loss(T).Q, q8)  # untouched by the T = 5 batch
    trainer.train_batch(x, y)
    assert trainer.loss_fn.Q.shape == (T, C, C) and not torch.equal(trainer.loss_fn.Q, q8)  # moved on from q8
    # both lengths survive a checkpoint
    torch.save(trainer.state_dict(), tmp_path / "t.pt")
    _, fresh = _trainer(loss="classification", num_classes=C)
    fresh.load_state_dict(torch.load(tmp_path / "t.pt", weights_only=True))
    assert torch.equal(fresh._loss(5).Q, trainer._loss(5).Q) and torch.equal(fresh._loss(T).Q, trainer._loss(T).Q)


def _nan_at(ys, steps):
    ys = ys.clone()
    ys[steps] = float("nan")
    return ys


@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_nonfinite_loss_raise(variant):
    x, _ = _data(dtype=torch.float64)
    ys = torch.randn(T, B, C, dtype=torch.float64)
    net, trainer = _trainer(loss="per_step", variant=variant)
    trainer.train_batch(x, ys)
    before = _fptt_state(trainer, net)
    with pytest.raises(FloatingPointError):
        trainer.train_batch(x, _nan_at(ys, [0]))
    _assert_states_equal(_fptt_state(trainer, net), before, rtol=0, atol=0)
    # a NaN at the last step: the first T-1 updates happen, the last changes nothing
    ref_net, ref = _trainer(loss="per_step", variant=variant)
    ref.train_batch(x, ys)
    ref.train_batch(x[:-1], ys[:-1])
    with pytest.raises(FloatingPointError, match=f"step {T}"):
        trainer.train_batch(x, _nan_at(ys, [T - 1]))
    _assert_states_equal(_fptt_state(trainer, net), _fptt_state(ref, ref_net), rtol=0, atol=0)


def test_nonfinite_loss_skip():
    x, _ = _data(dtype=torch.float64)
    ys = torch.randn(T, B, C, dtype=torch.float64)
    net, trainer = _trainer(loss="per_step", nonfinite="skip")
    trainer.train_batch(x, ys)
    before = _fptt_state(trainer, net)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        r = trainer.train_batch(x, _nan_at(ys, slice(None)))
    assert (r.updates, r.skipped) == (0, T) and math.isnan(r.loss)
    _assert_states_equal(_fptt_state(trainer, net), before, rtol=0, atol=0)
    # a NaN at step 3 only: that update is skipped, the others happen as without it
    ref_net, ref = _trainer(loss="per_step")
    ref.train_batch(x, ys)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref.train_batch(x[:2], ys[:2])
    with pytest.warns(RuntimeWarning, match="step 3"):
        r = trainer.train_batch(x[:3], _nan_at(ys[:3], [2]))
    assert (r.updates, r.skipped) == (2, 1) and math.isfinite(r.loss)
    _assert_states_equal(_fptt_state(trainer, net), _fptt_state(ref, ref_net), rtol=0, atol=0)


# -- subnormal floats --------------------------------------------------------------------------

def _skip_without_flush_mode():
    with flush_subnormals(True):
        if not flushes_subnormals():
            pytest.skip("torch cannot set a flush-denormal mode on this CPU")


class _ModeProbe(nn.Module):
    """Passes its input on and records whether subnormals were flushed when it ran."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(flushes_subnormals())
        return x


def test_trainer_flushes_subnormals_while_it_runs_and_restores_the_mode():
    _skip_without_flush_mode()
    probe = _ModeProbe()
    net = nn.Sequential(nn.Linear(N_IN, HIDDEN), fptt_ext.LTC(init_hidden=True), nn.Linear(HIDDEN, C), probe)
    x, y = _data()
    with flush_subnormals(False):
        trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters()), method="fptt", num_classes=C)
        assert not flushes_subnormals()  # building the trainer changes nothing
        assert trainer.train_batch(x, y).updates == T
        trainer.predict(x)
        assert not flushes_subnormals()  # nor does training: the mode is restored
        assert len(probe.seen) == 2 * T and all(probe.seen)
        probe.seen.clear()
        trainer.flush_denormal = False  # leaves the mode as it is
        trainer.train_batch(x, y)
        assert len(probe.seen) == T and not any(probe.seen)


def test_the_program_flushes_subnormals_for_the_whole_process():
    from fptt_ext.cli import COMMANDS, register_command, run

    _skip_without_flush_mode()
    seen = []
    register_command("probe", "record the float mode", lambda p: None, lambda args: seen.append(flushes_subnormals()) or 0)
    try:
        with flush_subnormals(False), pytest.raises(SystemExit) as exit_:  # restores the mode afterwards
            run(["probe"])
    finally:
        del COMMANDS["probe"]
    assert exit_.value.code == 0 and seen == [True]
