"""The ``fptt-ext`` command line.

Subcommands are registered in :data:`COMMANDS` as ``name -> (help, add_arguments,
run)``: ``add_arguments(parser)`` declares the flags, ``run(args)`` does the work
and returns an exit code. Add a subcommand with :func:`register_command`.
Bad input (``ValueError``, ``FileNotFoundError``, argparse errors) prints one
line to stderr and exits with code 2, without a traceback.

Usage::

    fptt-ext addtask --T 1000 --method fptt --model ltc --out runs/addtask/fptt-ltc
    fptt-ext addtask-plot runs/addtask/* --out runs/addtask/loss.png

Example:
    >>> main(["addtask", "--T", "1"])       # the message goes to stderr
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["COMMANDS", "UsageError", "build_parser", "main", "register_command"]


class UsageError(Exception):
    """Raised (instead of printing usage and exiting) when argparse rejects the input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register_command(name: str, help: str, add_arguments, run) -> None:
    """Add a subcommand: ``add_arguments(parser)`` then ``run(args) -> exit code``."""
    COMMANDS[name] = (help, add_arguments, run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


# ---------------------------------------------------------------------------------- addtask
def _addtask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=int, default=1000, help="sequence length (>= 2; default 1000)")
    p.add_argument("--method", choices=("fptt", "bptt", "tbptt"), default="fptt")
    p.add_argument("--model", choices=("ltc", "alif", "lstm"), default="ltc")
    p.add_argument("--iterations", type=_positive_int, default=3000, help="batches to train on (default 3000)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3, as in the paper)")
    p.add_argument("--K", type=int, default=None, metavar="K", help="FPTT windows (default T: update at every step)")
    p.add_argument("--k", type=int, default=1, metavar="k", help="TBPTT window length (default 1)")
    p.add_argument("--alpha", type=float, default=0.1, help="FPTT alpha (default 0.1)")
    p.add_argument("--beta", type=float, default=0.5, help="FPTT beta (default 0.5)")
    p.add_argument("--hidden", type=_positive_int, default=128, help="recurrent units (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default runs/addtask/<method>-<model>-T<T>)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads for this process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _set_threads(n) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def _addtask_run(args: argparse.Namespace) -> int:
    from .experiments.addtask import run_addtask

    _set_threads(args.threads)
    out = args.out or f"runs/addtask/{args.method}-{args.model}-T{args.T}"
    summary = run_addtask(T=args.T, method=args.method, model=args.model, iterations=args.iterations,
                          batch_size=args.batch_size, lr=args.lr, K=args.K, k=args.k, alpha=args.alpha,
                          beta=args.beta, seed=args.seed, out_dir=out, checkpoint_every=args.checkpoint_every,
                          resume=args.resume, progress=not args.no_progress, hidden=args.hidden)
    mse = summary["final_mse"]
    status = f"diverged at iteration {summary['diverged_at']}" if summary["diverged"] else "finished"
    print(f"{summary['label']} T={args.T}: {status} after {summary['iterations']} iterations; final MSE "
          f"(last {summary['final_window']}) = {'n/a' if mse is None else f'{mse:.4g}'}; results in {out}")
    return 0


def _addtask_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="directories written by `fptt-ext addtask`")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument("--smooth", type=_positive_int, default=1, help="moving-average window (default 1: raw)")
    p.add_argument("--title", default=None)


def _addtask_plot_run(args: argparse.Namespace) -> int:
    from .experiments.addtask import plot_addtask

    print(plot_addtask(args.run_dirs, args.out, smooth=args.smooth, title=args.title))
    return 0


register_command("addtask", "train on the Add-task (FPTT / BPTT / TBPTT; LTC, ALIF, LSTM)",
                 _addtask_arguments, _addtask_run)
register_command("addtask-plot", "plot the MSE curves of Add-task runs into one PNG",
                 _addtask_plot_arguments, _addtask_plot_run)


# ---------------------------------------------------------------------------------- train / eval
def _train_arguments(p: argparse.ArgumentParser) -> None:
    from .data.encodings import ENCODINGS
    from .experiments.classify import DATASETS, OPTIMIZERS

    p.add_argument("--model", default="ostl_rmnist", help="zoo classifier (default ostl_rmnist; see `fptt-ext zoo list`)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist")
    p.add_argument("--encoding", choices=sorted(ENCODINGS), default="rate")
    p.add_argument("--T", type=int, default=20, help="time steps per image (default 20)")
    p.add_argument("--method", default="fptt", help="fptt, bptt or tbptt-k (e.g. tbptt-1); default fptt")
    p.add_argument("--K", type=int, default=None, help="FPTT windows (default T)")
    p.add_argument("--neuron", choices=("ltc", "ltc-minus", "alif"), default="ltc")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[256, 256], help="hidden layer sizes")
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="default adam (paper, SRNNs)")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3, paper)")
    p.add_argument("--lr-step", type=_positive_int, default=None, help="halve the learning rate every N epochs")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="run directory (default runs/train)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=100, help="batches between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=_positive_int, default=None, help="use only the first N test images")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads for this process")
    p.add_argument("--no-progress", action="store_true")


def _parse_method(text: str) -> tuple[str, int]:
    if text in ("fptt", "bptt"):
        return text, 1
    if text.startswith("tbptt-") and text[6:].isdigit() and int(text[6:]) > 0:
        return "tbptt", int(text[6:])
    raise ValueError(f"unknown method {text!r}; use fptt, bptt or tbptt-k with k >= 1 (e.g. tbptt-1)")


def _train_run(args: argparse.Namespace) -> int:
    from .experiments.classify import train_classifier

    _set_threads(args.threads)
    method, k = _parse_method(args.method)
    s = train_classifier(model_name=args.model, dataset=args.dataset, encoding=args.encoding, T=args.T, method=method, K=args.K, k=k,
                         neuron=args.neuron, hidden=tuple(args.hidden), epochs=args.epochs,
                         batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, lr_step=args.lr_step,
                         alpha=args.alpha, beta=args.beta, seed=args.seed, out_dir=args.out,
                         checkpoint_every=args.checkpoint_every, resume=args.resume, limit_train=args.limit_train,
                         limit_test=args.limit_test, progress=not args.no_progress)
    print(f"test accuracy: {s['test_acc']:.2f}% on {s['test_n']} {args.dataset} test images "
          f"({s['data_time_share']:.1%} of the training time in data loading); results in {args.out}")
    return 0


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `fptt-ext train`")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate the first N test images only")


def _eval_run(args: argparse.Namespace) -> int:
    from .experiments.classify import evaluate_run

    r = evaluate_run(args.run_dir, limit=args.limit)
    print(f"test accuracy: {r['test_accuracy']:.2f}% on {r['n']} images")
    return 0


register_command("train", "train an LTC-SNN classifier online (FPTT / BPTT / TBPTT-k) on an image dataset",
                 _train_arguments, _train_run)
register_command("eval", "evaluate the weights of a `fptt-ext train` run on its test set", _eval_arguments, _eval_run)


# ---------------------------------------------------------------------------------- bench
def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("saved-bytes",), help="saved-bytes: autograd memory saved per update")
    p.add_argument("--T", type=_positive_int, nargs="+", default=[20, 100, 500, 1000], help="sequence lengths")
    p.add_argument("--methods", nargs="+", choices=("fptt", "bptt", "tbptt"), default=["fptt", "bptt"])
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")


def _bench_run(args: argparse.Namespace) -> int:
    import json

    from .bench import saved_bytes_table

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


# ---------------------------------------------------------------------------------- zoo
def _zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show"), help="list the models, or show one model's card")
    p.add_argument("name", nargs="?", default=None, help="model name (for show) or a pattern (for list)")


def _zoo_run(args: argparse.Namespace) -> int:
    import json

    from .zoo import list_models, model_card

    if args.action == "list":
        for name in list_models(args.name or "*"):
            card = model_card(name)
            weights = "checkpoint" if card.get("checkpoint") else "no checkpoint"
            print(f"{name:16} {card['dataset']:14} T={card['T']!s:5} {weights}")
        return 0
    if args.name is None:
        raise ValueError("zoo show needs a model name; see `fptt-ext zoo list`")
    print(json.dumps(model_card(args.name), indent=2))
    return 0


register_command("zoo", "list the model zoo or show a model card", _zoo_arguments, _zoo_run)


# ---------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="fptt-ext", description="Liquid time-constant SNNs trained with FPTT.")
    parser.add_argument("--version", action="version", version=f"fptt-ext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fptt-ext`` / ``python -m fptt_ext``; returns the exit code."""
    parser, args = build_parser(), None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return args._run(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"fptt-ext {getattr(args, 'command', None) or ''}: error: {e}".replace(" :", ":"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fptt-ext: interrupted", file=sys.stderr)
        return 130
