"""``fptt-ext train-events``: train a zoo classifier on DVS-Gesture / CIFAR10-DVS recordings."""

from __future__ import annotations

import argparse

from . import _clip, _positive_int, _set_threads, register_command


def _arguments(p: argparse.ArgumentParser) -> None:
    from ..experiments.classify import OPTIMIZERS, PRECISIONS
    from ..zoo.base import NEURONS

    p.add_argument("--model", required=True, help="an event-data zoo model (scnn_dvsgesture, scnn_dvscifar10, "
                                                  "srnn_dvsgesture)")
    p.add_argument("--root", default=None, help="folder holding DVSGesture/ or CIFAR10DVS/ (or set FPTT_EXT_DATA)")
    p.add_argument("--T", type=_positive_int, default=None, help="frames per recording (default: the card's)")
    p.add_argument("--method", choices=("fptt", "bptt", "tbptt"), default="fptt")
    p.add_argument("--K", type=_positive_int, default=None, help="FPTT windows (default T)")
    p.add_argument("--neuron", choices=NEURONS, default="ltc")
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: the card's recipe (16)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help="default: the card's (adamax)")
    p.add_argument("--lr", type=float, default=None, help="default: the card's recipe (1e-3)")
    p.add_argument("--clip", type=_clip, default=1.0, metavar="NORM",
                   help="clip the gradient norm to NORM before every update (default 1.0, the authors'; 0: off)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/events")
    p.add_argument("--checkpoint-every", type=_positive_int, default=50, help="batches between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--limit-train", type=_positive_int, default=None)
    p.add_argument("--limit-test", type=_positive_int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=_positive_int, default=None)
    p.add_argument("--no-progress", action="store_true")


def _run(args: argparse.Namespace) -> int:
    from ..experiments.events import train_events

    _set_threads(args.threads)
    s = train_events(model_name=args.model, root=args.root, T=args.T, method=args.method, K=args.K,
                     neuron=args.neuron, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                     lr=args.lr, clip=args.clip, precision=args.precision, seed=args.seed, out_dir=args.out,
                     checkpoint_every=args.checkpoint_every, resume=args.resume, limit_train=args.limit_train,
                     limit_test=args.limit_test, num_workers=args.workers, progress=not args.no_progress)
    print(f"test accuracy: {s['test_acc']:.2f}% on {s['test_n']} {s['dataset']} test recordings; results in {args.out}")
    return 0


register_command("train-events", "train a zoo classifier on event recordings (DVS-Gesture, CIFAR10-DVS)",
                 _arguments, _run)
