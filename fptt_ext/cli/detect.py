"""``fptt-ext train-detector`` (SPYv4 with FPTT over reads) and ``fptt-ext detect`` (images or a video)."""

from __future__ import annotations

import argparse

from . import _positive_int, _set_threads, register_command


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from ..experiments.detect import DETECTION_DATASETS, OPTIMIZERS
    from ..zoo.base import NEURONS

    p.add_argument("--dataset", choices=DETECTION_DATASETS, default="synthetic",
                   help="synthetic shapes (drawn on the fly) or PASCAL VOC (needs --root); default synthetic")
    p.add_argument("--root", default=None, help="folder holding VOCdevkit/ (for --dataset voc)")
    p.add_argument("--model", default="spyv4_tiny", help="spyv4 (full width) or spyv4_tiny (width 0.25)")
    p.add_argument("--neuron", choices=NEURONS, default="ltc")
    p.add_argument("--image-size", type=_positive_int, default=128, help="square input side, a multiple of 32")
    p.add_argument("--T", type=_positive_int, default=None, help="reads of each image (default: the card's, 4)")
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default: the card's (16)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None,
                   help="default: the card's recipe (spyv4: adagrad, the papers'; spyv4_tiny: adam)")
    p.add_argument("--lr", type=float, default=None, help="default: the card's recipe (1e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                   help="constant or cosine (annealed to 0 over all epochs, per batch); default: the card's recipe "
                        "(spyv4: constant, the papers'; spyv4_tiny: cosine)")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--mosaic-epochs", type=int, default=0, help="use mosaic augmentation for the first N epochs")
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--n-train", type=_positive_int, default=None,
                   help="training images (synthetic: default 2000; voc: first N)")
    p.add_argument("--n-test", type=_positive_int, default=None, help="test images (synthetic: default 500)")
    p.add_argument("--eval-every", type=_positive_int, default=1, help="epochs between test mAP evaluations")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this long, then evaluate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/detect", help="run directory (default runs/detect)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=50, help="batches between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", default="cpu", help="where the network runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0: in the main process)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads for this process")
    p.add_argument("--no-progress", action="store_true")


def _train_run(args: argparse.Namespace) -> int:
    from ..experiments.detect import train_detector

    _set_threads(args.threads)
    s = train_detector(dataset=args.dataset, root=args.root, model_name=args.model, neuron=args.neuron,
                       image_size=args.image_size, T=args.T, epochs=args.epochs, batch_size=args.batch_size,
                       optimizer=args.optimizer, lr=args.lr, lr_schedule=args.lr_schedule, alpha=args.alpha, beta=args.beta,
                       mosaic_epochs=args.mosaic_epochs, label_smoothing=args.label_smoothing,
                       n_train=args.n_train, n_test=args.n_test, seed=args.seed, out_dir=args.out,
                       checkpoint_every=args.checkpoint_every, resume=args.resume, max_minutes=args.max_minutes,
                       eval_every=args.eval_every, device=args.device, workers=args.workers,
                       progress=not args.no_progress)
    reads = ", ".join(f"{100 * m:.2f}" for m in s["map50_per_read"])
    print(f"{s['model']}: {s['num_params']:,} parameters, {s['spiking_neurons']:,} spiking neurons at "
          f"{s['image_size']}x{s['image_size']}")
    print(f"mAP@0.5: {100 * s['map50']:.2f}% on {s['test_n']} {s['dataset']} test images after {s['T']} reads "
          f"(after each read: {reads}); {s['train_seconds'] / 60:.1f} min of training; results in {args.out}")
    return 0


def _detect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (jpg/png) or one video file")
    p.add_argument("--run", required=True, help="a run directory written by `fptt-ext train-detector`, or a "
                   "published zoo detector (spyv4_tiny)")
    p.add_argument("--out", default="runs/detections", help="folder for annotated frames and the raster plot")
    p.add_argument("--T", type=_positive_int, default=None, help="reads per image (default: the run's)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold of drawn boxes (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="video: process the first N frames")
    p.add_argument("--keep-state", action="store_true",
                   help="video: do not reset the neurons between frames (a continuous stream, as the papers' webcam)")
    p.add_argument("--raster-neurons", type=_positive_int, default=200, help="neurons per layer in the raster plot")
    p.add_argument("--threads", type=_positive_int, default=None)


def _detect_run(args: argparse.Namespace) -> int:
    from ..experiments.infer import detect_files

    _set_threads(args.threads)
    r = detect_files(args.inputs, run_dir=args.run, out_dir=args.out, T=args.T, conf_thresh=args.conf,
                     iou_thresh=args.iou, max_frames=args.max_frames, keep_state=args.keep_state,
                     raster_neurons=args.raster_neurons)
    print(f"{r['frames']} frames, {r['detections']} detections; annotated frames in {args.out}, "
          f"spike raster in {r['raster']}")
    return 0


register_command("train-detector", "train the spiking YOLO detector SPYv4 with FPTT over multiple reads",
                 _train_arguments, _train_run)
register_command("detect", "run a trained SPYv4 on images or a video: annotated frames and a spike raster plot",
                 _detect_arguments, _detect_run)
