"""Every zoo network: builds, runs T steps in both step modes, takes an FPTT update, has the
card's parameter count and the papers' layer list; backends and neurons switch cleanly."""

import pytest
import torch
from spikingjelly.activation_based import functional

from fptt_ext import SequenceTrainer
from fptt_ext.zoo import architecture, create_model, list_models, model_card

# The papers' layer lists (docs/zoo.md, "The networks"), in their notation.
PAPER_LAYERS = {
    "scnn_mnist": "ConvK3C32S1P1-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-MPK2S2-512D-10I",
    "scnn_fmnist": "ConvK3C32S1P1-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-MPK2S2-512D-10I",
    "scnn_dvsgesture": "ConvK7C64S1P3-MPK2S2-ConvK7C128S1P3-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-MPK2S2-"
                       "ConvK3C256S1P1-MPK2S2-ConvK3C512S1P1-MPK2S2-512D-11I",
    "scnn_dvscifar10": "ConvK7C64S1P3-MPK2S2-ConvK7C128S1P3-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-MPK2S2-"
                       "ConvK3C256S1P1-MPK2S2-ConvK3C512S1P1-MPK2S2-512D-10I",
    "ostl_rmnist": "256D-256D-10I",  # 784-256-256 LTC (dense), LI 10
    "ostl_mnist5k": "256D-256D-10I",  # the same net on the 5,000 real MNIST images
    "srnn_smnist": "512R-10I",  # 1 recurrent layer 512, LI 10
    "srnn_smnist5k": "128R-10I",  # the same at 128, on the MNIST-5k images
    "srnn_psmnist": "512R-10I",
    "srnn_dvsgesture": "[1024,1024]-[512D,512D]-512R-11I",
    "srnn_addtask": "128R-Linear1",  # 128 recurrent LTC-SN, Linear -> 1
}
STEP_SHAPES = {"scnn_mnist": (1, 28, 28), "scnn_fmnist": (1, 28, 28), "scnn_fmnist_narrow": (1, 28, 28),
               "scnn_fmnist_half": (1, 28, 28),
               "scnn_dvsgesture": (2, 128, 128), "scnn_dvscifar10": (2, 128, 128), "ostl_rmnist": (784,),
               "ostl_mnist5k": (784,),
               "srnn_smnist": (1,), "srnn_smnist5k": (1,), "srnn_psmnist": (1,), "srnn_dvsgesture": (2, 32, 32), "srnn_addtask": (2,)}
SEQUENCE_MODELS = [n for n in list_models() if model_card(n)["task"] in ("classification", "regression")]


def test_every_sequence_model_has_a_test_shape():
    assert sorted(STEP_SHAPES) == sorted(SEQUENCE_MODELS)


@pytest.mark.parametrize("name", sorted(PAPER_LAYERS))
def test_layers_equal_the_papers(name):
    assert architecture(create_model(name)) == PAPER_LAYERS[name] == model_card(name)["architecture"]


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_builds_runs_and_takes_an_fptt_update(name):
    torch.manual_seed(0)
    card, model = model_card(name), create_model(name)
    assert sum(p.numel() for p in model.parameters()) == card["num_params"]
    T, B = 3, 2
    x = torch.rand(T, B, *STEP_SHAPES[name])
    regression = card["task"] == "regression"
    y = torch.rand(B) if regression else torch.randint(0, 10, (B,))
    classes = None if regression else int(card["architecture"].split("-")[-1][:-1])  # "...-10I"
    trainer = SequenceTrainer(model, torch.optim.Adamax(model.parameters(), 1e-3),
                              loss="regression_end" if regression else "classification", num_classes=classes)
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.train_batch(x, y)
    assert result.updates == T and torch.isfinite(result.outputs).all()
    assert result.outputs.shape[:2] == (T, B)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > 0.5 * len(before)  # FPTT moved the weights


@pytest.mark.parametrize("name,neuron", [("ostl_rmnist", "ltc"), ("scnn_fmnist_narrow", "ltc"), ("srnn_smnist", "ltc"),
                                         ("srnn_dvsgesture", "ltc"), ("ostl_rmnist", "plif"), ("srnn_smnist5k", "plif"),
                                         ("ostl_rmnist", "leaky"), ("scnn_fmnist_narrow", "leaky")])
def test_step_modes_agree_and_reset_net_resets(name, neuron):
    # With "plif", functional.set_step_mode(net, "m") also sets the SpikingJelly nodes of a net that
    # drives the steps itself (snnTorch backend); they must still run one step per call.
    # With "leaky", reset_net must reach snnTorch's Leaky, which SpikingJelly does not know
    # (SpikingNet.reset does).
    torch.manual_seed(1)
    model = create_model(name, neuron=neuron).eval()
    x = 4 * torch.rand(4, 3, *STEP_SHAPES[name])
    with torch.no_grad():
        single = torch.stack([model(x_t) for x_t in x])
        functional.reset_net(model)
        functional.set_step_mode(model, "m")
        multi = model(x)
        functional.reset_net(model)
        again = model(x)
        functional.set_step_mode(model, "s")
        functional.reset_net(model)
        single_again = torch.stack([model(x_t) for x_t in x])
    assert single.shape == multi.shape == (4, 3, single.shape[-1])
    torch.testing.assert_close(single, multi)
    assert torch.equal(multi, again)  # reset_net brought every neuron back to its initial state
    assert torch.equal(single, single_again)


@pytest.mark.parametrize("neuron", ["ltc", "ltc-minus", "alif", "plif"])
@pytest.mark.parametrize("name", ["ostl_rmnist", "scnn_fmnist_narrow"])
def test_backends_give_identical_outputs_for_identical_weights(name, neuron):
    torch.manual_seed(2)
    a = create_model(name, neuron=neuron).eval()
    b = create_model(name, neuron=neuron, backend="spikingjelly").eval()
    missing, unexpected = b.load_state_dict(a.state_dict(), strict=False)
    assert not missing and all(k.rsplit(".", 1)[-1] in ("threshold", "graded_spikes_factor", "reset_mechanism_val")
                               for k in unexpected)
    spikes = {"a": 0.0, "b": 0.0}
    for key, model in (("a", a), ("b", b)):
        for m in model.modules():
            if type(m).__name__ in ("LTC", "ALIF", "LTCNode", "ALIFNode", "ParametricLIFNode"):
                m.register_forward_hook(lambda mod, i, o, key=key: spikes.__setitem__(key, spikes[key] + o.sum().item()))
    x = 10 * torch.rand(5, 2, *STEP_SHAPES[name])  # strong enough that every neuron kind spikes
    with torch.no_grad():
        out_a = torch.stack([a(x_t) for x_t in x])
        functional.set_step_mode(b, "m")
        out_b = b(x)  # SpikingJelly's multi-step layers, one call for the whole sequence
    torch.testing.assert_close(out_a, out_b)
    assert spikes["a"] == spikes["b"] > 0


def test_neuron_switch_keeps_the_architecture():
    import snntorch as snn
    from spikingjelly.activation_based.neuron import ParametricLIFNode

    for neuron, kind in (("ltc", "LTC"), ("alif", "ALIF"), ("leaky", "Leaky"), ("plif", "ParametricLIFNode")):
        model = create_model("scnn_fmnist", neuron=neuron)
        assert architecture(model) == PAPER_LAYERS["scnn_fmnist"]
        assert sum(type(m).__name__ == kind for m in model.modules()) == 4
    leaky = create_model("ostl_rmnist", neuron="leaky")
    assert isinstance(leaky.layers[1], snn.Leaky)
    assert leaky(torch.rand(2, 784)).shape == (2, 10)
    assert isinstance(create_model("ostl_rmnist", neuron="plif").layers[1], ParametricLIFNode)


def test_the_recurrent_plif_baseline_feeds_back_its_spikes():
    from spikingjelly.activation_based.neuron import ParametricLIFNode

    torch.manual_seed(4)
    model = create_model("srnn_smnist5k", neuron="plif")
    assert architecture(model) == PAPER_LAYERS["srnn_smnist5k"]
    layer = model.layers[0]
    assert isinstance(layer.neuron.neuron, ParametricLIFNode)
    currents = []
    layer.neuron.neuron.register_forward_pre_hook(lambda m, args: currents.append(args[0].detach().clone()))
    x = torch.rand(2, 4, 1)
    with torch.no_grad():
        model(x[0])
        s1 = layer.neuron.spk.clone()
        model(x[1])
    assert s1.sum() > 0  # some neurons fired at the first step, so the feedback below is not zero
    with torch.no_grad():
        expected = layer.fc(x[1]) + layer.rec(s1)
    torch.testing.assert_close(currents[1], expected)


def test_the_plif_baseline_is_not_silent_at_initialisation():
    # With SpikingJelly's default threshold of 1.0 no neuron of this net fires on rate-coded
    # images (so no surrogate gradient either); at the LTC-SN's b0 the first layer does.
    from fptt_ext.data.encodings import encode

    torch.manual_seed(0)
    model = create_model("ostl_rmnist", neuron="plif")
    spikes = []
    model.layers[1].register_forward_hook(lambda m, i, o: spikes.append(o))
    x = encode("rate", torch.rand(16, 784) * 0.5, 20)  # [T, B, 784]
    for x_t in x:
        model(x_t)
    assert 0.01 < torch.stack(spikes).mean().item() < 0.9


def test_bad_input_is_refused_clearly():
    model = create_model("scnn_fmnist_narrow")
    with pytest.raises(ValueError, match=r"expects input \[B, 1, 28, 28\], got shape \(2, 784\)"):
        model(torch.rand(2, 784))
    with pytest.raises(ValueError, match="use step_mode='m' for a whole sequence"):
        model(torch.rand(3, 2, 1, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    functional.set_step_mode(model, "m")
    with pytest.raises(ValueError, match=r"expects input \[T, B, 1, 28, 28\]"):
        model(torch.rand(0, 2, 1, 28, 28))
    with pytest.raises(ValueError, match="backend='snntorch' with neuron='leaky'"):
        create_model("ostl_rmnist", neuron="leaky", backend="spikingjelly")
    with pytest.raises(ValueError, match="recurrent zoo networks are built from snnTorch layers"):
        create_model("srnn_smnist", neuron="plif", backend="spikingjelly")
    with pytest.raises(ValueError, match="unknown neuron 'lif'"):
        create_model("scnn_fmnist", neuron="lif")
    with pytest.raises(ValueError, match="step_mode must be"):
        model.step_mode = "x"


def test_plif_takes_a_threshold_and_nothing_else():
    from fptt_ext.zoo.base import PLIF_THRESHOLD, make_neuron

    assert make_neuron("plif", 4).v_threshold == PLIF_THRESHOLD
    assert make_neuron("plif", 4, threshold=0.5).v_threshold == 0.5
    with pytest.raises(ValueError, match=r"apply to ltc, ltc-minus and alif, not 'plif' \(which takes threshold\)"):
        make_neuron("plif", 4, beta_a=1.8)
    with pytest.raises(ValueError, match=r"not 'leaky' \(which takes none\)"):
        make_neuron("leaky", 4, threshold=0.5)
