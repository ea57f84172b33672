"""Published checkpoints re-measured on their cards' full test sets."""

import pytest

from fptt_ext.zoo import evaluate, model_card

# name -> the test accuracy it was published to reach (None: a measured checkpoint, no goal)
GOALS = {"ostl_mnist5k": 95.0, "srnn_smnist5k": None}


@pytest.mark.parametrize("name", sorted(GOALS))
def test_mnist5k_checkpoint_reproduces_its_card(name):
    card = model_card(name)
    result = evaluate(name)  # the 1,000 test images of the MNIST-5k split, as `fptt-ext eval NAME`
    assert result["n"] == card["test_n"] == 1000
    assert abs(result["test_accuracy"] - card["test_accuracy"]) <= 0.3
    if GOALS[name] is not None:
        assert card["test_accuracy"] >= GOALS[name]


@pytest.mark.parametrize("name", ["scnn_fmnist_narrow", "scnn_fmnist_half"])
def test_scnn_fmnist_checkpoint_reproduces_its_card(name):
    card = model_card(name)
    result = evaluate(name)  # the full Fashion-MNIST test set, at the card's T (8)
    assert card["T"] == card["trained_with"]["T"] == 8
    assert result["n"] == card["test_n"] == 10_000
    assert abs(result["test_accuracy"] - card["test_accuracy"]) <= 0.3
    assert card["test_accuracy"] >= 90.0  # the goal of the zoo's SCNN checkpoints


def test_spyv4_tiny_checkpoint_reproduces_its_card():
    card = model_card("spyv4_tiny")
    result = evaluate("spyv4_tiny")  # the 500 synthetic test images of its run, after each of 4 reads
    assert result["n"] == card["test_n"] == 500
    assert abs(result["map50"] - card["map50"]) <= 0.5
    assert result["map50_per_read"][-1] == result["map50"]
