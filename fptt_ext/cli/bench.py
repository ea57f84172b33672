"""``fptt-ext bench saved-bytes|memory|speed|profile``: measurements of the training methods.

Each prints a table; ``--json`` writes the numbers, ``--png`` (memory, speed) draws them.
Example::

    fptt-ext bench memory --T 20 50 100 200 500 1000 --json docs/bench/memory.json --png docs/bench/memory.png
    fptt-ext bench speed --network rmnist --batch-size 128 --rounds 7 --json speed.json --png speed.png
    fptt-ext bench profile --compare HEAD~3
    fptt-ext bench cell --hidden 128 256 --json cell.json     # LTC-SN step vs a gated cell, fused and plain
    fptt-ext bench addtask --K 10 1000                        # one Add-task iteration, fused and plain
    fptt-ext bench multistep                                  # SpikingJelly step_mode="m": our window loop vs theirs
    fptt-ext bench subnormals                                 # what subnormal floats cost, and where the net makes them
"""

from __future__ import annotations

import argparse
import json
import os

from . import _positive_int, register_command

_BASE_METHODS = ("fptt", "fptt-fused", "fptt-exact", "tbptt", "tbptt-traffic", "bptt", "sj-fptt")
_WORKLOAD_METHODS = _BASE_METHODS + tuple(m + "+compile" for m in _BASE_METHODS)  # bench.workloads.METHODS


def _write_json(path, obj) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
        print(f"wrote {path}")


def _png_dir(path) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _network_arguments(p, batch_size: int) -> None:
    p.add_argument("--network", choices=("rmnist", "scnn"), default="rmnist",
                   help="rmnist: 784-H-H LTC + LI 10; scnn: the static Fashion-MNIST SCNN")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[256, 256], help="rmnist layer widths")
    p.add_argument("--width", type=_positive_float, default=1.0, help="scnn channel multiplier (0.25: narrow)")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size)
    p.add_argument("--backend", choices=("spikingjelly", "snntorch"), default="spikingjelly",
                   help="neuron modules (sj-fptt needs spikingjelly: it saves/restores MemoryModule state)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="WHAT", parser_class=type(p), required=True)

    s = sub.add_parser("saved-bytes", help="autograd memory saved per update (deterministic)")
    s.add_argument("--T", type=_positive_int, nargs="+", default=[20, 100, 500, 1000], help="sequence lengths")
    s.add_argument("--methods", nargs="+", choices=("fptt", "bptt", "tbptt"), default=["fptt", "bptt"])
    s.add_argument("--batch-size", type=_positive_int, default=16)
    s.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")

    m = sub.add_parser("memory", help="peak RSS and saved bytes vs T, one fresh process per point")
    m.add_argument("--T", type=_positive_int, nargs="+", default=[20, 50, 100, 200, 500, 1000])
    m.add_argument("--methods", nargs="+", choices=_WORKLOAD_METHODS, default=["bptt", "tbptt", "fptt", "sj-fptt"])
    _network_arguments(m, batch_size=16)
    m.add_argument("--png", default=None, metavar="FILE", help="also draw memory vs T (log axes)")

    sp = sub.add_parser("speed", help="sample-steps/s of the methods, interleaved rounds, medians and ratios")
    sp.add_argument("--T", type=_positive_int, default=20, help="sequence length")
    sp.add_argument("--methods", nargs="+", choices=_WORKLOAD_METHODS, default=list(_BASE_METHODS))
    sp.add_argument("--rounds", type=_positive_int, default=7, help="timed rounds (median over them; >= 5)")
    sp.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    _network_arguments(sp, batch_size=128)
    sp.add_argument("--png", default=None, metavar="FILE", help="also draw the throughputs")

    pr = sub.add_parser("profile", help="torch.profiler phases of an FPTT step; --compare REV: before/after")
    pr.add_argument("--steps", type=_positive_int, default=20, help="profiled FPTT steps")
    _network_arguments(pr, batch_size=128)
    pr.add_argument("--compare", default=None, metavar="REV",
                    help="also time FPTT and TBPTT-1 steps of git revision REV against this tree, interleaved")
    pr.add_argument("--rounds", type=_positive_int, default=7, help="rounds of the --compare timing")

    c = sub.add_parser("cell", help="LTC-SN layer step (fused and plain) vs a gated cell with the same three "
                                    "matrix products, forward + backward per step, interleaved")
    c.add_argument("--hidden", type=_positive_int, nargs="+", default=[128, 256], help="layer widths N")
    c.add_argument("--batch-size", type=_positive_int, default=128)
    c.add_argument("--steps", type=_positive_int, default=20, help="steps per round")
    c.add_argument("--rounds", type=_positive_int, default=15)
    c.add_argument("--compiled", action="store_true",
                   help="also both layers under torch.compile (compiled in the warm-up round)")
    c.add_argument("--clock", choices=("process", "wall"), default="process",
                   help="process: CPU time of this process (other jobs on the core do not count)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")

    a = sub.add_parser("addtask", help="seconds per Add-task iteration with the fused and the plain neuron step")
    a.add_argument("--T", type=_positive_int, default=1000)
    a.add_argument("--batch-size", type=_positive_int, default=128)
    a.add_argument("--K", type=_positive_int, nargs="+", default=[10], help="FPTT windows (K = T: every step)")
    a.add_argument("--rounds", type=_positive_int, default=3)
    a.add_argument("--clock", choices=("process", "wall"), default="process")
    a.add_argument("--compare", default=None, metavar="REV",
                   help="also time the iteration of git revision REV against this tree, interleaved (one K)")
    a.add_argument("--compare-rounds", type=_positive_int, default=7, help="rounds of the --compare timing")
    a.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")

    ms = sub.add_parser("multistep", help="SpikingJelly multi-step mode: the nodes' window loop (gates' input share "
                                          "for the whole window) vs SpikingJelly's generic per-step loop")
    ms.add_argument("--shapes", nargs="+", default=["20x16x128", "100x16x128", "20x128x256", "100x128x256"],
                    metavar="TxBxN", help="windows: time steps x batch x width")
    ms.add_argument("--rounds", type=_positive_int, default=7)
    ms.add_argument("--clock", choices=("process", "wall"), default="process")
    ms.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")

    sn = sub.add_parser("subnormals", help="ms per matrix product with subnormal floats kept and flushed, and "
                                           "the subnormal values a training step of the R-MNIST net makes")
    sn.add_argument("--shape", type=_positive_int, nargs=3, default=[128, 512, 512], metavar=("M", "K", "N"),
                    help="the product [M, K] x [K, N]")
    sn.add_argument("--fraction", type=_positive_float, default=1 / 35,
                    help="share of the left operand's entries that are subnormal")
    sn.add_argument("--rounds", type=_positive_int, default=21)
    sn.add_argument("--methods", nargs="*", default=["tbptt", "fptt"], choices=("tbptt", "fptt", "bptt"),
                    help="training methods whose subnormal values are counted (none: only the product)")
    sn.add_argument("--T", type=_positive_int, default=20)
    sn.add_argument("--batch-size", type=_positive_int, default=128)
    sn.add_argument("--train-rounds", type=int, default=12,
                    help="sequences trained (subnormals kept) before the one that is counted")
    sn.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")

    for q in (s, m, sp, pr, c, a, ms, sn):
        q.add_argument("--threads", type=_positive_int, default=1, help="torch threads (1: steady timings)")


def _saved_bytes(args) -> int:
    import torch

    from ..bench import saved_bytes_table

    torch.set_num_threads(args.threads)
    rows = saved_bytes_table(tuple(args.T), tuple(args.methods), batch_size=args.batch_size)
    print(f"{'method':>7} {'T':>6} {'updates':>8} {'MiB saved per update':>22}")
    for r in rows:
        print(f"{r['method']:>7} {r['T']:>6} {r['updates']:>8} {r['bytes_per_update'] / 2**20:>22.3f}")
    _write_json(args.json, rows)
    return 0


def _check_backend(args) -> None:
    if args.backend != "spikingjelly" and "sj-fptt" in getattr(args, "methods", ()):
        raise ValueError("sj-fptt (SpikingJelly's fptt_online_training) restores SpikingJelly MemoryModule "
                         "state only; use --backend spikingjelly or drop sj-fptt from --methods")


def _memory(args) -> int:
    from ..bench.memory import memory_table, plot_memory, print_memory

    _check_backend(args)
    result = memory_table(tuple(args.T), tuple(args.methods), network=args.network, hidden=tuple(args.hidden),
                          width=args.width, batch_size=args.batch_size, backend=args.backend, threads=args.threads,
                          progress=True)
    print_memory(result)
    _write_json(args.json, result)
    if args.png:
        _png_dir(args.png)
        plot_memory(result, args.png)
        print(f"wrote {args.png}")
    return 1 if any("error" in r for r in result["rows"]) else 0


def _speed(args) -> int:
    from ..bench.speed import plot_speed, print_speed, speed_table

    _check_backend(args)
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    result = speed_table(args.methods, network=args.network, T=args.T, batch_size=args.batch_size,
                         hidden=tuple(args.hidden), width=args.width, backend=args.backend, rounds=args.rounds,
                         warmup=args.warmup, threads=args.threads, progress=True)
    print_speed(result)
    for k, v in result["ratios"].items():
        print(f"  {k}: {v:.3f}")
    _write_json(args.json, result)
    if args.png:
        _png_dir(args.png)
        plot_speed(result, args.png)
        print(f"wrote {args.png}")
    return 0


def _profile(args) -> int:
    from ..bench.profile import compare_revisions, print_profile, profile_fptt_step

    result = profile_fptt_step(network=args.network, steps=args.steps, batch_size=args.batch_size,
                               hidden=tuple(args.hidden), width=args.width, backend=args.backend,
                               threads=args.threads)
    print_profile(result)
    if args.compare:
        if args.network != "rmnist" or args.backend != "spikingjelly":
            raise ValueError("--compare times the R-MNIST net with SpikingJelly-backed neurons only; "
                             "drop --network/--backend")
        cmp = compare_revisions(args.compare, T=args.steps, batch_size=args.batch_size, hidden=tuple(args.hidden),
                                rounds=args.rounds, progress=True)
        print(f"\nbefore = {args.compare}, after = this tree; medians of {args.rounds} interleaved rounds")
        for k, v in cmp["ms_per_step"].items():
            print(f"  {k}: {v:.2f} ms/step")
        for k, v in cmp["ratios"].items():
            print(f"  {k}: {v:.3f}")
        result["compare"] = cmp
    _write_json(args.json, result)
    return 0


def _cell(args) -> int:
    from ..bench.fused import cell_table

    r = cell_table(tuple(args.hidden), batch_size=args.batch_size, steps=args.steps, rounds=args.rounds,
                   threads=args.threads, clock=args.clock, compiled=args.compiled)
    for n, ms in r["ms_per_step"].items():
        times = ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
        ratios = ", ".join(f"{k}: {v:.3f}" for k, v in r["ratios"][n].items())
        print(f"N = {n}: ms per step ({args.clock} time): {times}; ratios: {ratios}")
    _write_json(args.json, r)
    return 0


def _addtask(args) -> int:
    from ..bench.fused import addtask_table
    from ..bench.profile import compare_revisions

    if args.compare and len(args.K) != 1:
        raise ValueError(f"--compare times one window length; pass one --K, got {args.K}")
    r = addtask_table(T=args.T, batch_size=args.batch_size, K_values=tuple(args.K), rounds=args.rounds,
                      threads=args.threads, clock=args.clock)
    for k, s in r["seconds_per_iteration"].items():
        print(f"{k}: fused {s['fused']:.3f} s, plain {s['plain']:.3f} s per iteration ({args.clock} time); "
              f"fused / plain {r['ratios'][k]:.3f}; its matrix products alone {s['matrix products alone']:.3f} s "
              f"(fused / that {r['fused_over_matrix_products'][k]:.3f}); without the beta_a = 0 shortcut "
              f"{s['fused, full graph']:.3f} s (fused / that {r['shortcut_ratios'][k]:.3f}); with subnormal "
              f"floats kept {s['fused, subnormals kept']:.3f} s (fused / that {r['subnormal_ratios'][k]:.3f})")
        if k in r["compiled_ratios"]:
            print(f"{k}: trained through torch.compile {s['fused, compiled']:.3f} s per iteration "
                  f"(that / fused {r['compiled_ratios'][k]:.3f})")
    if args.compare:
        cmp = compare_revisions(args.compare, methods=("addtask",), T=args.T, batch_size=args.batch_size,
                                hidden=(r["config"]["hidden"],), K=args.K[0], rounds=args.compare_rounds,
                                progress=True)
        before, after = cmp["seconds_per_iteration"]["addtask before"], cmp["seconds_per_iteration"]["addtask after"]
        print(f"before = {args.compare}, after = this tree (K={args.K[0]}, wall time, medians of "
              f"{args.compare_rounds} interleaved rounds): {before:.3f} s and {after:.3f} s per iteration; "
              f"after / before {cmp['ratios']['addtask after/before']:.3f}")
        r["compare"] = cmp
    _write_json(args.json, r)
    return 0


def _multistep(args) -> int:
    from ..bench.multistep import multistep_table

    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 3 or min(s) < 1 for s in shapes):
        raise SystemExit(f"fptt-ext bench multistep: --shapes expects TxBxN with positive integers, e.g. 20x16x128; "
                         f"got {' '.join(args.shapes)}")
    r = multistep_table(shapes, rounds=args.rounds, threads=args.threads, clock=args.clock)
    print(f"{'window':>18} {'fast':>9} {'generic':>9}   ms per window, forward + backward ({args.clock} time); "
          f"generic / fast")
    for k, ms in r["ms_per_window"].items():
        print(f"{k:>18} {ms['fast']:>9.1f} {ms['generic']:>9.1f}   {r['ratios'][k]:.3f}")
    _write_json(args.json, r)
    return 0


def _subnormals(args) -> int:
    from ..bench.subnormals import product_table, subnormal_census

    if args.fraction > 1:
        raise ValueError(f"--fraction is a share of the entries, at most 1; got {args.fraction}")
    if args.train_rounds < 0:
        raise ValueError(f"--train-rounds must be >= 0, got {args.train_rounds}")
    r = {"product": product_table(shape=tuple(args.shape), fraction=args.fraction, rounds=args.rounds,
                                  threads=args.threads)}
    p = r["product"]
    print(f"[{p['config']['shape'][0]}, {p['config']['shape'][1]}] x [{p['config']['shape'][1]}, "
          f"{p['config']['shape'][2]}], {p['config']['subnormal_entries']} subnormal entries: "
          + ", ".join(f"{k} {v:.3f} ms" for k, v in p["ms_per_product"].items())
          + f"; kept / flushed {p['ratios']['kept / flushed']:.2f} (CPU capability "
          f"{p['config']['cpu_capability']}, {args.threads} thread(s))")
    if args.methods:
        r["census"] = subnormal_census(tuple(args.methods), T=args.T, batch_size=args.batch_size,
                                       train_rounds=args.train_rounds, threads=args.threads)
        for method, c in r["census"]["methods"].items():
            top = ", ".join(f"{op} {n}" for op, n in list(c["subnormal_outputs_by_operator"].items())[:5]) or "none"
            print(f"{method}: {c['subnormal_outputs_per_step']:.1f} subnormal values per step; "
                  f"{c['products_with_subnormal_operand']} of {c['products']} matrix products got one; "
                  f"most from {top}")
    _write_json(args.json, r)
    return 0


def _bench_run(args: argparse.Namespace) -> int:
    return {"saved-bytes": _saved_bytes, "memory": _memory, "speed": _speed, "profile": _profile, "cell": _cell,
            "addtask": _addtask, "multistep": _multistep, "subnormals": _subnormals}[args.what](args)


register_command("bench", "measurements: saved-bytes (autograd memory per update), memory (peak RSS vs T), "
                          "speed (throughput vs TBPTT-1, BPTT, SpikingJelly), profile (FPTT step), "
                          "cell (LTC-SN step vs a gated cell), addtask (one Add-task iteration), "
                          "multistep (SpikingJelly step_mode='m'), subnormals (their cost, and where they arise)",
                 _bench_arguments, _bench_run)
