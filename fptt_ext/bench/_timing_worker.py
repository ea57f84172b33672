"""A timing worker for :func:`fptt_ext.bench.profile.compare_revisions`, run as a script.

It imports whichever ``fptt_ext`` is first on ``PYTHONPATH`` (the current tree or an older
revision), so it uses only APIs every revision has: ``OSTLNet`` and ``SequenceTrainer``, and
for ``addtask`` the Add-task's ``addtask_model``, ``RegressionEndLoss`` and ``AddTask``.
Protocol: one line ``run`` on stdin trains on one sequence and prints its seconds; EOF ends.

    python _timing_worker.py METHOD T BATCH K HIDDEN... < commands

METHOD ``fptt``, ``tbptt`` or ``bptt`` trains the R-MNIST net (K unused); ``addtask`` is one
iteration of the authors' Add-task network (FPTT with windows of K steps, clipping at 1.0,
``HIDDEN`` neurons), as ``fptt-ext bench addtask`` times it.
"""

import sys
import time

import torch


def _addtask(T: int, B: int, K: int, hidden: int):
    from fptt_ext.data.addtask import AddTask
    from fptt_ext.fptt import SequenceTrainer
    from fptt_ext.fptt.losses import RegressionEndLoss
    from fptt_ext.zoo.srnn import addtask_model

    torch.manual_seed(0)
    net, _ = addtask_model("ltc", hidden, readout="mem", threshold=0.5, beta_a=0.0, detach_adaptation=False)
    trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), lr=3e-3), method="fptt", K=K,
                              loss=RegressionEndLoss(T, "window", K=K), max_grad_norm=1.0)
    x, y = AddTask(T, B, 0).batch(0)
    return trainer, x, y


def main(argv) -> None:
    method, T, B, K, hidden = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), tuple(int(h) for h in argv[4:])
    torch.set_num_threads(1)
    if method == "addtask":
        trainer, x, target = _addtask(T, B, K, hidden[0])
    else:
        trainer, x, target = _rmnist(method, T, B, hidden)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        trainer.train_batch(x, target)
        print(time.perf_counter() - t0, flush=True)


def _rmnist(method: str, T: int, B: int, hidden: tuple):
    from fptt_ext.fptt import SequenceTrainer
    from fptt_ext.zoo.ostl import OSTLNet

    torch.manual_seed(0)
    model = OSTLNet(n_in=784, hidden=hidden, n_out=10, backend="spikingjelly")
    with torch.no_grad():
        model(torch.zeros(B, 784))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    trainer = SequenceTrainer(model, opt, method=method, k=1, loss="per_step")
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (B,), generator=g)
    x = (torch.rand(T, B, 784, generator=g) < 0.2).float()
    return trainer, x, y.expand(T, -1)


if __name__ == "__main__":
    main(sys.argv[1:])
