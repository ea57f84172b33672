"""Registered zoo entries (more architectures join as their issues land).

Example:
    >>> create_model("srnn_addtask")(torch.zeros(3, 2)).shape
    torch.Size([3, 1])
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the doctest)

from .ostl import OSTLNet
from .registry import create_model, register_model  # noqa: F401
from .srnn import AddTaskSNN


@register_model(
    "ostl_rmnist", task="classification", dataset="fashion-mnist", encoding="rate", T=20,
    paper_test_accuracy=98.63, paper_metric="R-MNIST (rate-coded MNIST) test accuracy, %",
    train_command="fptt-ext train --model ostl_rmnist --dataset fashion-mnist --encoding rate --T 20 --epochs 3",
    description="784-256-256 LTC-SN (dense) with an LI readout of 10 (the OSTL R-MNIST network)",
)
def ostl_rmnist(neuron: str = "ltc", n_in: int = 784, hidden=(256, 256), num_classes: int = 10):
    return OSTLNet(n_in=n_in, hidden=tuple(hidden), n_out=num_classes, neuron=neuron)


@register_model(
    "srnn_addtask", task="regression", dataset="addtask", encoding="addtask", T=1000,
    paper_test_accuracy=None, paper_metric="Add-task MSE (the paper: converges to ~0 with FPTT)",
    train_command="fptt-ext addtask --T 1000 --method fptt --model ltc",
    description="128 recurrent LTC-SN and a Linear(128, 1) readout",
)
def srnn_addtask(neuron: str = "ltc", hidden: int = 128):
    return AddTaskSNN(neuron, hidden=hidden)
