"""A timing worker for :func:`fptt_ext.bench.profile.compare_revisions`, run as a script.

It imports whichever ``fptt_ext`` is first on ``PYTHONPATH`` (the current tree or an older
revision), so it uses only APIs every revision has: ``OSTLNet`` and ``SequenceTrainer``.
Protocol: one line ``run`` on stdin trains on one sequence and prints its seconds; EOF ends.

    python _timing_worker.py METHOD T BATCH HIDDEN... < commands
"""

import sys
import time

import torch


def main(argv) -> None:
    method, T, B, hidden = argv[0], int(argv[1]), int(argv[2]), tuple(int(h) for h in argv[3:])
    torch.set_num_threads(1)
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
    target = y.expand(T, -1)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        trainer.train_batch(x, target)
        print(time.perf_counter() - t0, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
