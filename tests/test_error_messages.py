"""Messages that say what was expected and what was given, in the user's terms: the argument
as it was passed, the shape as it was passed, the model's input rather than a layer inside."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fptt_ext
from fptt_ext.fptt import SequenceTrainer
from fptt_ext.spikingjelly import ALIFNode, LINode, LTCNode
from fptt_ext.zoo import create_model


@pytest.mark.parametrize("make", [fptt_ext.LTC, fptt_ext.ALIF, fptt_ext.LI, LTCNode, ALIFNode, LINode])
@pytest.mark.parametrize("beta", [1.5, 0.0, -0.2, float("nan"), "0.9"])
def test_initial_decay_is_reported_as_given(make, beta):
    with pytest.raises(ValueError) as err:
        make(beta=beta, size=4)
    msg = str(err.value)
    assert msg.startswith(f"{make.__name__}: beta (the initial membrane decay) must be a number strictly between 0 "
                          f"and 1 (or None), got {beta!r}"), msg


@pytest.mark.parametrize("make", [fptt_ext.LTC, LTCNode])
def test_adaptation_decay_is_reported_as_given(make):
    with pytest.raises(ValueError, match=r"adaptation_decay \(the initial rho\) must be .* got 1.0$"):
        make(adaptation_decay=1.0)


@pytest.mark.parametrize("make", [LTCNode, ALIFNode, LINode])
def test_multi_step_input_of_the_wrong_rank_is_reported_with_its_shape(make):
    with pytest.raises(ValueError) as err:
        make(step_mode="m")(torch.rand(4, 3))
    assert f"{make.__name__} in multi-step mode expects input of shape (T, batch, neurons)" in str(err.value)
    assert "got shape (4, 3); for one step [batch, ...] use step_mode='s'" in str(err.value)
    with pytest.raises(ValueError, match=r"T >= 1, got shape \(0, 2, 3\)"):
        make(step_mode="m")(torch.rand(0, 2, 3))


def test_input_of_another_dtype_than_the_gates():
    ltc = fptt_ext.LTC(size=3)
    with pytest.raises(TypeError, match=r"LTC has torch.float32 gates, got a torch.float64 input current; convert the "
                                        r"input \(x.to\(torch.float32\)\) or the network \(net.to\(torch.float64\)\)"):
        ltc(torch.rand(2, 3, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for the gates: no complaint
        assert ltc(torch.rand(2, 3, dtype=torch.bfloat16))[0].shape == (2, 3)


@pytest.mark.parametrize("backend,step_mode", [("snntorch", "s"), ("snntorch", "m"), ("spikingjelly", "m")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_input_of_a_zoo_net_is_reported_at_the_model_input(backend, step_mode, bad):
    net = create_model("ostl_rmnist", hidden=(8,), backend=backend, step_mode=step_mode)
    x = torch.rand(2, 784) if step_mode == "s" else torch.rand(3, 2, 784)
    x.view(-1)[5] = bad
    with pytest.raises(ValueError) as err:
        net(x)
    assert str(err.value) == (f"OSTLNet received a non-finite (NaN or Inf) input of shape {tuple(x.shape)}; "
                              "check the data fed to the model")  # not "LTC received ... of shape (2, 8)"


def test_nonfinite_input_to_the_trainer_is_reported_as_the_data():
    net = nn.Sequential(nn.Linear(2, 4), fptt_ext.LTC(init_hidden=True, size=4), nn.Linear(4, 3))
    trainer = SequenceTrainer(net, torch.optim.SGD(net.parameters(), 0.1), loss="classification", num_classes=3,
                              nonfinite="skip")
    x = torch.rand(5, 2, 2)
    x[3, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x holds NaN or Inf values \(shape \(5, 2, 2\)\); check the input data"):
        trainer.train_batch(x, torch.tensor([0, 1]))
