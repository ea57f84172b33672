"""Time one FPTT step of the Fashion-MNIST SCNN under the CPU levers: channels-last, bf16
autocast, both, and a forward without graph (what steps without an update cost).

The configurations run interleaved (A B C D E, A B C D E, ...) on the same model and batch,
so a busy machine slows them alike; the table gives the median seconds per step and the
speed-up over fp32.

    python examples/scnn_speed.py --width 0.25 0.5 1.0 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fptt_ext import FPTT
from fptt_ext.fptt.state import StatefulModules
from fptt_ext.zoo import create_model

CONFIGS = {"fp32": (False, False, False), "channels-last": (True, False, False), "bf16": (False, True, False),
           "bf16+channels-last": (True, True, False), "forward, no graph": (False, False, True)}


def make_step(width: float, channels_last: bool, bf16: bool, no_grad: bool, batch: int):
    torch.manual_seed(0)
    model = create_model("scnn_fmnist", width=width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = FPTT(model.parameters(), torch.optim.Adamax(model.parameters(), 1e-3))
    states = StatefulModules(model)
    x, y = torch.rand(batch, 1, 28, 28).contiguous(memory_format=fmt), torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if no_grad:
                with torch.no_grad():
                    model(x)
            else:
                loss = torch.nn.functional.cross_entropy(model(x).float(), y) + opt.regularizer()
                opt.zero_grad()
                loss.backward()
                opt.step()
        states.detach()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"seconds per FPTT step, batch {args.batch}, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'width':>6} " + " ".join(f"{name:>20}" for name in CONFIGS))
    for width in args.width:
        steps = {name: make_step(width, *cfg, args.batch) for name, cfg in CONFIGS.items()}
        times = {name: [] for name in CONFIGS}
        for r in range(args.rounds + 1):  # round 0 warms up
            for name, step in steps.items():
                t = time.perf_counter()
                step()
                if r:
                    times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        print(f"{width:>6} " + " ".join(f"{med[n]:>8.3f} s ({med['fp32'] / med[n]:>4.2f}x)" for n in CONFIGS))


if __name__ == "__main__":
    main()
