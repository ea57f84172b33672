"""Measure the drop-in: snnTorch's tutorials 5-7 and SpikingJelly's PLIF net, neuron swapped.

Trains every (network, neuron, seed) of the grid with :mod:`fptt_ext.bench.tutorials`, one
after the other on one thread, and writes the runs and their means to a JSON file
(default ``docs/results/snntorch/tutorials.json``), which ``scripts/docs_tables.py``
renders as the table of ``docs/snntorch-tutorials.md``:

    python scripts/bench_tutorials.py                       # the full grid (about two hours on 2 busy cores)
    python scripts/bench_tutorials.py --only t5 --seeds 0   # one network, one seed
    python scripts/bench_tutorials.py --render FILE         # print the table of a result file
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fptt_ext.bench import tutorials as tut

DEFAULT_OUT = ROOT / "docs" / "results" / "snntorch" / "tutorials.json"
NETWORKS = {
    "t5": ("snnTorch tutorial 5: 784-1000-10, CE on the output membrane", ("leaky", "ltc", "alif")),
    "t6": ("snnTorch tutorial 6: CSNN, nn.Sequential, ce_rate_loss", ("leaky", "ltc", "alif")),
    "t7": ("snnTorch tutorial 7: CSNN on event frames (tonic), mse_count_loss", ("leaky", "ltc", "alif")),
    "sj": ("SpikingJelly FashionMNISTNet, multi-step, MSE on firing rate", ("plif", "ltc", "alif")),
}
BASELINE = {"t5": "leaky", "t6": "leaky", "t7": "leaky", "sj": "plif"}


def _mean(xs):
    return statistics.fmean(xs) if xs else None


def measure(only, seeds, epochs, sj_train, sj_test, sj_channels, cache) -> dict:
    results = {}
    for net in only:
        title, neurons = NETWORKS[net]
        data = None
        if net == "t7":  # one pass through tonic for all runs
            data = (*tut.event_frames("train", cache_path=cache), *tut.event_frames("test", cache_path=cache))
        elif net == "sj":
            from fptt_ext.data.images import image_split

            data = (*image_split("fashion-mnist", "train", sj_train), *image_split("fashion-mnist", "test", sj_test))
        runs = {n: [] for n in neurons}
        for seed in seeds:
            for n in neurons:  # interleaved, so a change of load on the machine hits every neuron alike
                if net == "sj":
                    r = tut.run_sj(n, seed=seed, epochs=epochs, channels=sj_channels, data=data)
                else:
                    r = tut.run_tutorial(net, n, seed=seed, epochs=epochs, data=data)
                runs[n].append(r)
                print(f"{net} {n} seed {seed}: test accuracy {100 * r['test_accuracy']:.1f}%, "
                      f"{r['seconds_per_epoch']:.1f} s/epoch, {r['ms_per_batch_step']:.2f} ms per batch-step",
                      file=sys.stderr, flush=True)
        summary = {n: {"test_accuracy_mean": _mean([r["test_accuracy"] for r in rs]),
                       "test_accuracy_runs": [r["test_accuracy"] for r in rs],
                       "seconds_per_epoch_mean": _mean([r["seconds_per_epoch"] for r in rs]),
                       "ms_per_batch_step_mean": _mean([r["ms_per_batch_step"] for r in rs])}
                   for n, rs in runs.items()}
        base = summary[BASELINE[net]]["test_accuracy_mean"]
        for row in summary.values():
            row["points_vs_baseline"] = 100.0 * (row["test_accuracy_mean"] - base)
        results[net] = {"title": title, "baseline": BASELINE[net], "summary": summary,
                        "config": runs[neurons[0]][0]["config"] | {"neuron": None, "seed": None},
                        "runs": runs}
    return results


def render_table(result: dict, link: str = "results/snntorch/tutorials.json") -> str:
    """The markdown table of a result file: network, each neuron's mean test accuracy, time per epoch."""
    rows = ["| network (budget) | baseline | LTC | ALIF | time per epoch: baseline / LTC / ALIF | LTC per step vs baseline |",
            "|---|---|---|---|---|---|"]
    for r in result["networks"].values():
        s, cfg = r["summary"], r["config"]
        base, n_seeds = r["baseline"], len(r["summary"][r["baseline"]]["test_accuracy_runs"])
        budget = (f"{cfg['epochs']} epoch of {cfg['train_images']:,} images, {cfg['test_images']:,} test, "
                  f"{n_seeds} seeds")

        def acc(n, s=s, base=base):
            return f"{100 * s[n]['test_accuracy_mean']:.1f}%" + ("" if n == base else f" ({s[n]['points_vs_baseline']:+.1f})")

        name = "Leaky" if base == "leaky" else "PLIF"
        times = " / ".join(f"{s[n]['seconds_per_epoch_mean']:.0f} s" for n in (base, "ltc", "alif"))
        ratio = s["ltc"]["ms_per_batch_step_mean"] / s[base]["ms_per_batch_step_mean"]
        rows.append(f"| {r['title']} ({budget}) | {name} {acc(base)} | {acc('ltc')} | {acc('alif')} | {times} | "
                    f"{ratio:.1f}x ({s['ltc']['ms_per_batch_step_mean']:.1f} vs {s[base]['ms_per_batch_step_mean']:.1f} ms) |")
    rows.append(f"\nMeasured by `{result['command']}` ([results]({link})).")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=sorted(NETWORKS), default=list(NETWORKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--sj-train", type=int, default=10_000, help="Fashion-MNIST training images for the sj network")
    p.add_argument("--sj-test", type=int, default=2_000)
    p.add_argument("--sj-channels", type=int, default=32)
    p.add_argument("--cache", default=None, help="tonic.DiskCachedDataset folder for t7's frames (default: a temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--render", type=Path, default=None, help="print the table of this result file and exit")
    args = p.parse_args(argv)
    if args.render:
        print(render_table(json.loads(args.render.read_text())), end="")
        return 0
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        networks = measure(args.only, args.seeds, args.epochs, args.sj_train, args.sj_test, args.sj_channels,
                           args.cache or tmp)
    result = {"command": "python scripts/bench_tutorials.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": 1, "networks": networks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render_table(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
