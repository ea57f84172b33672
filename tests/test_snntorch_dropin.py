"""fptt_ext.LTC as a drop-in for snn.Leaky: snnTorch's conventions and scale.

Covers: ``LTC(beta=b)`` starts as ``snn.Leaky(beta=b)`` (same membrane, threshold, reset and
returned ``mem``); the snnTorch-scale neuron is the papers' neuron on a rescaled membrane
(same spikes and adaptation); ``reset_delay``; ``graded_spikes_factor``; the defaults
without ``beta``; and snnTorch's utilities around it (``utils.reset``, ``functional`` losses
and accuracy, ``surrogate``, ``spikegen``, ``spikeplot``).
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import spikegen, spikeplot, surrogate, utils
from torch import nn

import fptt_ext
from fptt_ext.neurons.gates import logit

matplotlib.use("Agg")


def _gates_only(neuron):
    return {k: v for k, v in neuron.state_dict().items() if k.startswith("gate_")}


def _constant_gates(neuron, beta):
    """Gate weights zero: alpha = 1 - beta for every input (snn.Leaky's fixed decay)."""
    with torch.no_grad():
        neuron.gate_m.weight.zero_()
        neuron.gate_m.bias.fill_(logit(1.0 - beta))
        neuron.gate_adp.weight.zero_()


@pytest.mark.parametrize("beta", [0.5, 0.95])
def test_ltc_with_beta_starts_as_snn_leaky(beta):
    """Constant gates and no adaptation: LTC(beta) integrates, fires and resets as snn.Leaky(beta).

    Compared with ``reset_delay=False`` on the Leaky side: snnTorch's delayed reset subtracts the
    threshold after the decay, which changes its dynamics; LTC's delayed reset is its own reset one
    call later (same spikes), so its returned membrane, once reset, is the Leaky's."""
    torch.manual_seed(0)
    leaky = snn.Leaky(beta=beta, spike_grad=surrogate.atan(), reset_delay=False).double()
    ltc = fptt_ext.LTC(beta=beta, beta_a=0.0, size=6, spike_grad=surrogate.atan()).double()
    _constant_gates(ltc, beta)
    assert float(ltc.threshold) == 1.0 and ltc.reset_mechanism == "subtract" and ltc.reset_delay
    # inputs below 1.5 (1 - beta): a spike's reset brings the membrane below the threshold (snnTorch
    # resets a membrane that stays above it once more at the next step, which LTC does not)
    drive = 0.8 + 0.6 * torch.rand(4, 6, dtype=torch.float64)  # per neuron, some above threshold
    xs = (1 - beta) * drive * (1 + 0.1 * torch.rand(60, 4, 6, dtype=torch.float64))
    m_l, m_t = leaky.init_leaky(), ltc.init_leaky()
    spikes = 0
    with torch.no_grad():
        for x in xs:
            s_l, m_l = leaky(x, m_l)
            s_t, m_t = ltc(x, m_t)
            assert torch.equal(s_l, s_t)
            assert torch.allclose(m_t - s_t * 1.0, m_l, atol=1e-6)  # snn.Leaky keeps beta in float32
            spikes += int(s_l.sum())
    assert 0 < spikes < xs.numel()


@pytest.mark.parametrize("kind", [fptt_ext.LTC, fptt_ext.ALIF])
def test_leaky_scale_is_the_papers_neuron_on_a_rescaled_membrane(kind):
    """Same gates: spikes and adaptation of the snnTorch-scale neuron equal those of the papers'
    neuron with threshold and beta_a divided by the gain; its membrane is gain times theirs."""
    torch.manual_seed(1)
    beta, gain = 0.8, 5.0
    scaled = kind(beta=beta, leaky_scale=True, size=5, reset_delay=False).double()
    papers = kind(beta=beta, leaky_scale=False, size=5, threshold=1.0 / gain, beta_a=scaled.beta_a / gain,
                  reset_mechanism="subtract", spike_grad=fptt_ext.MultiGaussian()).double()
    papers.load_state_dict(_gates_only(scaled), strict=False)
    assert scaled.gain == pytest.approx(gain)
    xs = torch.rand(25, 3, 5, dtype=torch.float64)
    spikes = 0
    with torch.no_grad():
        for x in xs:
            s_a, m_a = scaled(x)
            s_b, m_b = papers(x)
            assert torch.equal(s_a, s_b)
            assert torch.allclose(scaled.b, papers.b, atol=1e-12)
            assert torch.allclose(m_a, gain * m_b, atol=1e-9)
            spikes += int(s_a.sum())
    assert 0 < spikes < xs.numel() and papers.b.abs().sum() > 0


def test_default_surrogate_is_the_papers_one_on_the_papers_scale():
    ltc = fptt_ext.LTC(beta=0.95)
    assert ltc.spike_grad.sigma == pytest.approx(0.3 * 20)
    assert fptt_ext.LTC().spike_grad.sigma == pytest.approx(0.3)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_reset_delay_returns_the_membrane_before_its_reset(reset):
    torch.manual_seed(2)
    now = fptt_ext.LTC(size=4, reset_mechanism=reset, threshold=0.2).double()
    later = fptt_ext.LTC(size=4, reset_mechanism=reset, threshold=0.2, reset_delay=True).double()
    later.load_state_dict(now.state_dict())
    xs = torch.rand(12, 2, 4, dtype=torch.float64)
    fired = 0
    with torch.no_grad():
        for x in xs:
            s_now, m_now = now(x)
            s_later, m_later = later(x)
            assert torch.equal(s_now, s_later) and torch.equal(now.b, later.b)
            theta = 0.2 + 1.8 * later.b
            # the returned membrane is the one that crossed the threshold; resetting it gives now's
            assert torch.all(m_later[s_later == 1] >= theta[s_later == 1])
            expect = m_later * (1 - s_later) if reset == "zero" else m_later - s_later * theta
            assert torch.allclose(expect, m_now, atol=1e-12)
            fired += int(s_now.sum())
    assert fired > 0


def test_defaults_with_and_without_beta():
    papers, snntorch_like = fptt_ext.LTC(), fptt_ext.LTC(beta=0.9)
    assert (float(papers.threshold), papers.reset_mechanism, papers.reset_delay, papers.gain) == (0.1, "zero", False, 1.0)
    assert (float(snntorch_like.threshold), snntorch_like.reset_mechanism, snntorch_like.reset_delay) == (
        1.0, "subtract", True)
    assert snntorch_like.gain == pytest.approx(10.0)
    # a slower, weaker adaptation in snnTorch's scale: tau_adp = 200 steps, at most double the threshold
    assert (papers.beta_a, snntorch_like.beta_a) == (1.8, pytest.approx(0.9))
    snntorch_like(torch.zeros(1, 3))
    rho = torch.sigmoid(snntorch_like.gate_adp.bias.detach().double())
    assert torch.allclose(rho, torch.full((3,), math.exp(-1 / 200), dtype=torch.float64), atol=1e-6)
    # ALIF's beta keeps its meaning of the papers' ASRNN (the constant decay) unless asked
    alif = fptt_ext.ALIF(beta=0.9)
    assert (float(alif.threshold), alif.gain) == (0.1, 1.0)
    assert fptt_ext.ALIF(beta=0.9, leaky_scale=True).gain == pytest.approx(10.0)
    with pytest.raises(ValueError, match="leaky_scale"):
        fptt_ext.LTC(leaky_scale=True)
    assert "leaky_scale=True" in repr(snntorch_like) and "leaky_scale" not in repr(papers)


def test_graded_spikes_factor_scales_the_output_only():
    torch.manual_seed(3)
    plain = fptt_ext.LTC(beta=0.9, size=3)
    graded = fptt_ext.LTC(beta=0.9, size=3, graded_spikes_factor=0.5)
    graded.load_state_dict(_gates_only(plain), strict=False)
    for x in 0.5 * torch.rand(6, 2, 3):
        s_p, m_p = plain(x)
        s_g, m_g = graded(x)
        assert torch.equal(0.5 * s_p, s_g) and torch.equal(m_p, m_g)
        assert torch.equal(plain.spk, graded.spk)  # the binary spike drives adaptation and reset


def _tiny_sequential(**kw):
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), fptt_ext.LTC(beta=0.7, init_hidden=True, **kw),
                         nn.Linear(12, 3), fptt_ext.LTC(beta=0.7, init_hidden=True, output=True, **kw))


@pytest.mark.parametrize("loss_fn", [SF.ce_rate_loss(), SF.ce_count_loss(), SF.mse_count_loss(0.8, 0.2),
                                     SF.mse_membrane_loss()], ids=["ce_rate", "ce_count", "mse_count", "mse_membrane"])
@pytest.mark.parametrize("spike_grad", [None, surrogate.fast_sigmoid(slope=25), surrogate.atan(),
                                        surrogate.sigmoid()], ids=["default", "fast_sigmoid", "atan", "sigmoid"])
def test_snntorch_losses_and_surrogates_train_the_gates(loss_fn, spike_grad):
    torch.manual_seed(4)
    kw = {} if spike_grad is None else {"spike_grad": spike_grad}
    net = _tiny_sequential(**kw)
    x, y = 3.0 * torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    utils.reset(net)
    spk_rec, mem_rec = [], []
    for _ in range(6):
        spk, mem = net(x)
        spk_rec.append(spk)
        mem_rec.append(mem)
    spk_rec, mem_rec = torch.stack(spk_rec), torch.stack(mem_rec)
    loss = loss_fn(mem_rec if isinstance(loss_fn, SF.mse_membrane_loss) else spk_rec, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert net[2].gate_m.weight.grad.abs().sum() > 0 and net[4].gate_adp.weight.grad is not None
    assert 0.0 <= SF.accuracy_rate(spk_rec, y) <= 1.0


def test_spikegen_input_and_spikeplot_raster():
    import matplotlib.pyplot as plt

    torch.manual_seed(5)
    net = _tiny_sequential()
    data = spikegen.rate(torch.rand(4, 1, 4, 4), num_steps=10)  # [T, B, 1, 4, 4]
    utils.reset(net)
    spk = torch.stack([net[:3](x) for x in data])  # the hidden layer's spikes (init_hidden: spikes only)
    assert spk.shape == (10, 4, 12)
    fig, ax = plt.subplots()
    spikeplot.raster(spk[:, 0], ax, s=5)
    assert len(ax.collections) == 1
    plt.close(fig)


def test_utils_reset_clears_the_delayed_reset_state():
    net = _tiny_sequential()
    x = 3.0 * torch.rand(2, 1, 4, 4)
    utils.reset(net)
    first = [net(x)[1] for _ in range(4)]
    utils.reset(net)
    again = [net(x)[1] for _ in range(4)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
