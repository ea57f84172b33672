"""Train the Add-task LTC-SNN with FPTT on several processes (DistributedDataParallel, CPU gloo).

    torchrun --nproc_per_node 2 examples/ddp_addtask.py --T 100 --iterations 20

Every rank trains on its own part of each batch; gradients are averaged by DDP at every
FPTT update, so W, W_bar and lam stay identical on all ranks.
"""

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fptt_ext import SequenceTrainer
from fptt_ext.data.addtask import AddTask
from fptt_ext.zoo.srnn import AddTaskSNN


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64, help="global batch, split over the ranks")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # same initial weights on every rank
    # The neurons keep their state in buffers: DDP must not overwrite them from rank 0.
    model = DistributedDataParallel(AddTaskSNN("ltc"), forward_sync_buffers=False)
    trainer = SequenceTrainer(model, torch.optim.Adam(model.parameters(), 3e-3), method="fptt",
                              loss="regression_end")
    data = AddTask(T=args.T, batch_size=args.batch_size, seed=0)
    share = args.batch_size // world
    for i in range(args.iterations):
        x, y = data.batch(i)
        part = slice(rank * share, (rank + 1) * share)
        result = trainer.train_batch(x[:, part], y[part])
        if rank == 0 and (i + 1) % 5 == 0:
            mse = torch.nn.functional.mse_loss(result.outputs[-1].reshape(-1), y[part]).item()
            print(f"iteration {i + 1}: loss {result.loss:.4f}, final-step MSE {mse:.4f}")
    w = torch.cat([q.detach().reshape(-1) for q in model.parameters()])
    gathered = [torch.zeros_like(w) for _ in range(world)]
    dist.all_gather(gathered, w)
    if rank == 0:
        print("weights identical on all ranks:", all(torch.equal(gathered[0], g) for g in gathered))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
