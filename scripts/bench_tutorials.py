"""Measure the drop-in: snnTorch's tutorials 5-7 and SpikingJelly's PLIF net, neuron swapped.

Trains every (neuron, seed) of one network with :mod:`fptt_ext.bench.tutorials`, one after
the other on one thread (neurons interleaved within each seed), and writes the runs and their
means to ``docs/results/snntorch/<network>.json``; ``scripts/docs_tables.py`` renders every
file of that folder as one row of the table in ``docs/snntorch-tutorials.md``:

    python scripts/bench_tutorials.py t5 --seeds 0 1 2      # snnTorch tutorial 5, three seeds
    python scripts/bench_tutorials.py sj --seeds 0 --sj-train 10000
    python scripts/bench_tutorials.py --render              # print the table of the result files
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "snntorch"
NETWORKS = {
    "t5": ("snnTorch tutorial 5: 784-1000-10, CE on the output membrane", ("leaky", "ltc", "alif")),
    "t6": ("snnTorch tutorial 6: CSNN, nn.Sequential, ce_rate_loss", ("leaky", "ltc", "alif")),
    "t7": ("snnTorch tutorial 7: CSNN on event frames (tonic), mse_count_loss", ("leaky", "ltc", "alif")),
    "sj": ("SpikingJelly FashionMNISTNet, multi-step, MSE on firing rate", ("plif", "ltc", "alif")),
}
BASELINE = {"t5": "leaky", "t6": "leaky", "t7": "leaky", "sj": "plif"}


def _mean(xs):
    return statistics.fmean(xs) if xs else None


def measure(net, seeds, epochs, sj_train, sj_test, sj_channels, cache) -> dict:
    sys.path.insert(0, str(ROOT))
    from fptt_ext.bench import tutorials as tut

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
    return {"network": net, "title": title, "baseline": BASELINE[net], "summary": summary,
            "config": runs[neurons[0]][0]["config"] | {"neuron": None, "seed": None}, "runs": runs}


def render_table(results: list[dict]) -> str:
    """The markdown table of result files: one row per network, means over the seeds."""
    rows = [("| network (budget) | baseline | LTC | ALIF | time per epoch: baseline / LTC / ALIF "
             "| LTC time per step vs baseline |"),
            "|---|---|---|---|---|---|"]
    for r in results:
        s, cfg, base = r["summary"], r["config"], r["baseline"]
        n_seeds = len(s[base]["test_accuracy_runs"])
        budget = (f"{cfg['epochs']} epoch{'s' if cfg['epochs'] > 1 else ''}, {cfg['train_images']:,} train / "
                  f"{cfg['test_images']:,} test images, "
                  f"{n_seeds} seed{'s' if n_seeds > 1 else ''}")

        def acc(n, s=s, base=base):
            return f"{100 * s[n]['test_accuracy_mean']:.1f}%" + ("" if n == base else f" ({s[n]['points_vs_baseline']:+.1f})")

        name = "Leaky" if base == "leaky" else "PLIF"
        times = " / ".join(f"{s[n]['seconds_per_epoch_mean']:.0f} s" for n in (base, "ltc", "alif"))
        ratio = s["ltc"]["ms_per_batch_step_mean"] / s[base]["ms_per_batch_step_mean"]
        rows.append(f"| {r['title']} ({budget}; [results]({r['link']})) | {name} {acc(base)} | {acc('ltc')} | "
                    f"{acc('alif')} | {times} | {ratio:.1f}x ({s['ltc']['ms_per_batch_step_mean']:.1f} vs "
                    f"{s[base]['ms_per_batch_step_mean']:.1f} ms per batch and step) |")
    commands = "; ".join(f"`{r['command']}`" for r in results)
    rows.append(f"\nMeasured with one thread by {commands}.")
    return "\n".join(rows) + "\n"


def load_results(folder: Path = RESULTS) -> list[dict]:
    """Every result file of ``folder``, in the order t5, t6, t7, sj, each with its docs link."""
    out = []
    for net in NETWORKS:
        path = folder / f"{net}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()) | {"link": f"results/snntorch/{path.name}"})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", nargs="?", choices=sorted(NETWORKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--sj-train", type=int, default=10_000, help="Fashion-MNIST training images for the sj network")
    p.add_argument("--sj-test", type=int, default=2_000)
    p.add_argument("--sj-channels", type=int, default=32)
    p.add_argument("--cache", default=None, help="tonic.DiskCachedDataset folder for t7's frames (default: a temp dir)")
    p.add_argument("--out", type=Path, default=None, help="default: docs/results/snntorch/<network>.json")
    p.add_argument("--render", action="store_true", help="print the table of the result files and exit")
    args = p.parse_args(argv)
    if args.render:
        print(render_table(load_results()), end="")
        return 0
    if args.network is None:
        p.error("name a network (t5, t6, t7 or sj), or --render")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.network, args.seeds, args.epochs, args.sj_train, args.sj_test, args.sj_channels,
                         args.cache or tmp)
    argv = argv if argv is not None else sys.argv[1:]
    result = {"command": "python scripts/bench_tutorials.py " + " ".join(argv),
              "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": 1} | result
    out = args.out or RESULTS / f"{args.network}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(render_table([result | {"link": str(out)}]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
