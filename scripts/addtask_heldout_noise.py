"""How much one held-out Add-task batch scatters around the mean when the weights do not move.

``fptt-ext addtask`` logs the MSE of one fresh batch of 128 after every iteration, and
``max_excursion`` in its summary is the largest such MSE over the mean of the 100 before it.
Part of any excursion is the batch's own sampling noise: a converged network still errs on
a few sequences more than on the rest. This script fixes the weights of the published
``srnn_addtask`` checkpoint, scores many fresh batches of the same size, and writes the
spread of ``batch MSE / mean`` to ``docs/results/addtask/noise/srnn_addtask.json``:

    python scripts/addtask_heldout_noise.py --batches 1000

A run's excursion well above this noise floor is the weights moving; one near it is not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fptt_ext.data.addtask import AddTask
from fptt_ext.fptt.loop import is_multi_step, run_sequence
from fptt_ext.fptt.state import StatefulModules
from fptt_ext.zoo import create_model, model_card

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "addtask" / "noise" / "srnn_addtask.json"
SEED = 777  # a stream that neither training (seeds 0, 1, ...) nor the card's evaluation (12345) uses


@torch.no_grad()
def batch_mses(model, T: int, batches: int, batch_size: int) -> list[float]:
    states, out_mse = StatefulModules(model), []
    model.eval()
    for i in range(batches):
        x, y = AddTask(T, batch_size, seed=SEED).batch(i)
        states.reset()
        out, _ = run_sequence(model, x, multi_step=is_multi_step(model))
        out_mse.append(((out[-1].reshape(y.shape) - y) ** 2).mean().item())
    return out_mse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128, help="as the held-out batch of fptt-ext addtask")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    card = model_card("srnn_addtask")
    model = create_model("srnn_addtask", pretrained=True)
    start = time.perf_counter()
    mse = batch_mses(model, card["T"], args.batches, args.batch_size)
    mean = sum(mse) / len(mse)
    ratios = torch.tensor(mse, dtype=torch.float64) / mean
    q = {f"{p:g}": torch.quantile(ratios, p / 100).item() for p in (50, 90, 99, 99.9)}
    summary = {
        "checkpoint": "srnn_addtask", "sha256": card["sha256"], "T": card["T"], "batch_size": args.batch_size,
        "batches": args.batches, "seed": SEED, "mean_mse": mean, "ratio_to_mean_quantiles": q,
        "max_ratio": ratios.max().item(), "share_above_5x": (ratios > 5).double().mean().item(),
        "seconds": time.perf_counter() - start,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
