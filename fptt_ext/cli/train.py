"""``fptt-ext train`` and ``fptt-ext eval``: image classifiers."""

from __future__ import annotations

import argparse

from . import _clip, _positive_int, _set_threads, register_command


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.encodings import ENCODINGS
    from ..experiments.classify import DATASETS, LR_SCHEDULES, OPTIMIZERS, PRECISIONS
    from ..fptt.losses import DIVERGENCES
    from ..zoo.base import NEURONS

    p.add_argument("--model", default="ostl_rmnist", help="zoo classifier (default ostl_rmnist; see `fptt-ext zoo list`)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default=None, help="default: the model card's")
    p.add_argument("--encoding", choices=sorted(ENCODINGS), default=None, help="default: the model card's")
    p.add_argument("--T", type=_positive_int, default=None,
                   help="time steps per image (default: the card's, 20 for images)")
    p.add_argument("--method", default="fptt", help="fptt, bptt or tbptt-k (e.g. tbptt-1); default fptt")
    p.add_argument("--K", type=_positive_int, default=None,
                   help="FPTT windows: one update per window of T/K steps (default: the card's recipe)")
    p.add_argument("--neuron", choices=NEURONS, default="ltc")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=None,
                   help="hidden layer sizes of dense/recurrent nets (default: the model's)")
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: the card's recipe")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None,
                   help="default: the card's recipe (adam 3e-3 for SRNNs, adamax 1e-3 for SCNNs, as in the papers)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the card's recipe)")
    p.add_argument("--lr-step", type=_positive_int, default=None, help="halve the learning rate every N epochs")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                   help="constant, step (with --lr-step), cosine (to 0 over the run, per batch) or "
                        "cosine-per-epoch (to 0 within each epoch, then restarted); default: the card's recipe")
    p.add_argument("--clip", type=_clip, default=1.0, metavar="NORM",
                   help="clip the gradient norm to NORM before every update (default 1.0, as in all of the "
                        "authors' scripts; 0 turns clipping off)")
    p.add_argument("--divergence", choices=DIVERGENCES, default=None,
                   help="the loss's divergence term: running (Q estimated), uniform or none; default: the card's")
    p.add_argument("--wbar-at-epoch-end", action=argparse.BooleanOptionalAction, default=None,
                   help="FPTT: set W <- W_bar at every epoch end, before testing (the authors'); default: the card's")
    p.add_argument("--monitor-every", type=int, default=50, metavar="N",
                   help="every N batches, show the accuracy on 1,000 test images the model never trains on "
                        "(default 50; 0: off)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16: forward/backward under CPU autocast (weights stay fp32)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for conv nets")
    p.add_argument("--fused-fptt", action="store_true",
                   help="FPTT: compile the regulariser gradient and the W_bar/lam update into one kernel per "
                        "parameter, with Adam/Adamax also the optimizer's update (torch.compile; needs a C++ "
                        "compiler, a few seconds to compile)")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile(model): each step's forward and backward as a few fused "
                        "kernels (needs a C++ compiler; the first steps compile, up to a minute)")
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
    from ..experiments.classify import train_classifier

    _set_threads(args.threads)
    method, k = _parse_method(args.method)
    s = train_classifier(model_name=args.model, dataset=args.dataset, encoding=args.encoding, T=args.T, method=method, K=args.K, k=k,
                         neuron=args.neuron, hidden=args.hidden and tuple(args.hidden), epochs=args.epochs,
                         batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, lr_step=args.lr_step,
                         lr_schedule=args.lr_schedule, clip=args.clip, divergence=args.divergence,
                         wbar_at_epoch_end=args.wbar_at_epoch_end, monitor_every=args.monitor_every,
                         alpha=args.alpha, beta=args.beta, precision=args.precision,
                         channels_last=args.channels_last, fused_fptt=args.fused_fptt, compile=args.compile,
                         seed=args.seed, out_dir=args.out,
                         checkpoint_every=args.checkpoint_every, resume=args.resume, limit_train=args.limit_train,
                         limit_test=args.limit_test, progress=not args.no_progress)
    print(f"test accuracy: {s['test_acc']:.2f}% on {s['test_n']} {s['dataset']} test images "
          f"({s['data_time_share']:.1%} of the training time in data loading); results in {args.out}")
    return 0


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN_DIR|MODEL",
                   help="a directory written by `fptt-ext train`, or a zoo model name (its published checkpoint)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="evaluate the first N test images only (Add-task: N batches of 100)")


def _eval_run(args: argparse.Namespace) -> int:
    import difflib
    from pathlib import Path

    from ..experiments.classify import evaluate_run
    from ..zoo import evaluate, list_models

    models = list_models()
    if args.target in models:
        r = evaluate(args.target, pretrained=True, limit=args.limit)
    elif Path(args.target).is_dir():
        r = evaluate_run(args.target, limit=args.limit)
    else:
        close = difflib.get_close_matches(args.target, models, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{args.target!r} is neither a zoo model nor a run directory; {hint}zoo models: "
                         f"{', '.join(models)}; a run directory is what `fptt-ext train --out DIR` writes")
    if "test_mse" in r:
        print(f"test MSE: {r['test_mse']:.4f} on {r['n']} sequences")
    elif "map50" in r:
        reads = ", ".join(f"{m:.2f}" for m in r["map50_per_read"])
        print(f"test mAP@0.5: {r['map50']:.2f}% on {r['n']} images (after each read: {reads})")
    else:
        print(f"test accuracy: {r['test_accuracy']:.2f}% on {r['n']} images")
    return 0


register_command("train", "train an LTC-SNN classifier online (FPTT / BPTT / TBPTT-k) on an image dataset",
                 _train_arguments, _train_run)
register_command("eval", "evaluate a `fptt-ext train` run or a pretrained zoo model on its test set",
                 _eval_arguments, _eval_run)
