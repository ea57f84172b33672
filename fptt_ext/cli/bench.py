"""``fptt-ext bench``: measurements of the training methods."""

from __future__ import annotations

import argparse

from . import _positive_int, register_command


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("saved-bytes",), help="saved-bytes: autograd memory saved per update")
    p.add_argument("--T", type=_positive_int, nargs="+", default=[20, 100, 500, 1000], help="sequence lengths")
    p.add_argument("--methods", nargs="+", choices=("fptt", "bptt", "tbptt"), default=["fptt", "bptt"])
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")


def _bench_run(args: argparse.Namespace) -> int:
    import json

    from ..bench import saved_bytes_table

    rows = saved_bytes_table(tuple(args.T), tuple(args.methods), batch_size=args.batch_size)
    print(f"{'method':>7} {'T':>6} {'updates':>8} {'MiB saved per update':>22}")
    for r in rows:
        print(f"{r['method']:>7} {r['T']:>6} {r['updates']:>8} {r['bytes_per_update'] / 2**20:>22.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


register_command("bench", "measurements (saved-bytes: autograd memory per update, FPTT vs BPTT)",
                 _bench_arguments, _bench_run)
