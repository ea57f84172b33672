"""``fptt-ext addtask`` and ``fptt-ext addtask-plot``: the Add-task experiment."""

from __future__ import annotations

import argparse

from . import _clip, _int_at_least, _positive_int, _set_threads, register_command


def _addtask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=_int_at_least(2), default=1000, help="sequence length (>= 2; default 1000)")
    p.add_argument("--method", choices=("fptt", "bptt", "tbptt"), default="fptt")
    p.add_argument("--model", choices=("ltc", "ltc-minus", "alif", "plif", "lstm"), default="ltc",
                   help="ltc-minus: the LTC-SN with a constant adaptation decay (liquid_adp=False); plif: "
                        "SpikingJelly's ParametricLIFNode, the baseline")
    p.add_argument("--iterations", type=_positive_int, default=3000, help="batches to train on (default 3000)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="default 128 (the authors')")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3, the authors')")
    p.add_argument("--lr-milestones", type=_positive_int, nargs="+", default=(), metavar="N",
                   help="multiply the learning rate by --lr-gamma after each of these iterations (default: none)")
    p.add_argument("--lr-gamma", type=float, default=0.1, help="learning-rate factor at each milestone (default 0.1)")
    p.add_argument("--K", type=_positive_int, default=None, metavar="K",
                   help="FPTT windows: one update per window of T/K steps (default 10, the authors', or T if "
                        "T < 10; K = T updates at every step)")
    p.add_argument("--k", type=_positive_int, default=1, metavar="k", help="TBPTT window length (default 1)")
    p.add_argument("--alpha", type=float, default=0.1, help="FPTT alpha (default 0.1)")
    p.add_argument("--beta", type=float, default=0.5, help="FPTT beta (default 0.5)")
    p.add_argument("--clip", type=_clip, default=1.0, metavar="NORM",
                   help="clip the gradient norm to NORM before every update (default 1.0, as in every script of "
                        "the authors; 0 turns clipping off)")
    p.add_argument("--readout", choices=("mem", "spk"), default="mem",
                   help="Linear(hidden, 1) on the membrane potential (default, the authors') or on the spikes")
    p.add_argument("--threshold", type=float, default=None,
                   help="baseline threshold b0 (default: 0.5 for ltc, the authors' Add-task neuron; 0.1 for "
                        "ltc-minus and alif, the LTC-SN of docs/concepts/ltc.md)")
    p.add_argument("--beta-a", type=float, default=None,
                   help="adaptation strength (default: 0 for ltc, the authors' Add-task neuron has no adaptation; "
                        "1.8 for ltc-minus and alif)")
    p.add_argument("--detach-adaptation", action=argparse.BooleanOptionalAction, default=None,
                   help="no gradient through the spike that drives the adaptation (forward unchanged): cuts the "
                        "spike -> threshold -> spike loop that explodes gradients over long windows (default: on "
                        "whenever the threshold adapts, --beta-a != 0)")
    p.add_argument("--loss-weighting", choices=("window", "time"), default=None,
                   help="window: (p + 1/K) MSE, the authors' (default for fptt); time: (t/T) MSE (default otherwise)")
    p.add_argument("--hidden", type=_positive_int, default=128, help="recurrent units (default 128)")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile(net): each step as a few fused kernels (needs a C++ compiler; "
                        "the first iteration compiles, about half a minute)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default runs/addtask/<method>-<model>-T<T>)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads for this process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")



def _addtask_run(args: argparse.Namespace) -> int:
    from ..experiments.addtask import run_addtask

    _set_threads(args.threads)
    out = args.out or f"runs/addtask/{args.method}-{args.model}-T{args.T}"
    summary = run_addtask(T=args.T, method=args.method, model=args.model, iterations=args.iterations,
                          batch_size=args.batch_size, lr=args.lr, K=args.K, k=args.k, alpha=args.alpha,
                          beta=args.beta, seed=args.seed, out_dir=out, checkpoint_every=args.checkpoint_every,
                          resume=args.resume, progress=not args.no_progress, hidden=args.hidden,
                          max_grad_norm=args.clip, readout=args.readout, threshold=args.threshold,
                          beta_a=args.beta_a, loss_weighting=args.loss_weighting,
                          detach_adaptation=args.detach_adaptation, lr_milestones=args.lr_milestones,
                          lr_gamma=args.lr_gamma, compile=args.compile)
    mse = summary["final_mse"]
    status = f"diverged at iteration {summary['diverged_at']}" if summary["diverged"] else "finished"
    print(f"{summary['label']} T={args.T}: {status} after {summary['iterations']} iterations; held-out MSE "
          f"(mean of the last {summary['final_window']}) = {'n/a' if mse is None else f'{mse:.4g}'}; "
          f"results in {out}")
    return 0


def _addtask_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="directories written by `fptt-ext addtask`")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument("--smooth", type=_positive_int, default=1, help="moving-average window (default 1: raw)")
    p.add_argument("--title", default=None)


def _addtask_plot_run(args: argparse.Namespace) -> int:
    from ..experiments.addtask import plot_addtask

    print(plot_addtask(args.run_dirs, args.out, smooth=args.smooth, title=args.title))
    return 0


register_command("addtask", "train on the Add-task (FPTT / BPTT / TBPTT; LTC, ALIF, LSTM)",
                 _addtask_arguments, _addtask_run)
register_command("addtask-plot", "plot the MSE curves of Add-task runs into one PNG",
                 _addtask_plot_arguments, _addtask_plot_run)
