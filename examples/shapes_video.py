"""Write a short synthetic video for `fptt-ext detect`: the shapes of one synthetic scene gliding
over its background (`fptt_ext.data.synthetic.moving_shapes`), as H.264 with PyAV.

    python examples/shapes_video.py runs/shapes.mp4 --frames 30 --seed 1
    fptt-ext detect runs/shapes.mp4 --run spyv4_tiny --out runs/detections-video

With `--sheet`, also a PNG of every `--every`-th frame with its true boxes (green), to put beside
the detections.
"""

from __future__ import annotations

import argparse

import torch
from torchvision.utils import draw_bounding_boxes, make_grid

from fptt_ext.data.synthetic import moving_shapes
from fptt_ext.experiments.infer import write_png, write_video


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="video file to write (.mp4)")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=2.0, help="pixels per frame")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--sheet", default=None, help="also write this PNG of frames with their true boxes")
    p.add_argument("--every", type=int, default=6, help="frames between the sheet's images")
    args = p.parse_args()
    frames, targets = moving_shapes(args.frames, args.image_size, args.seed, args.speed)
    write_video(frames, args.out, fps=args.fps)
    print(f"wrote {args.frames} frames of {args.image_size}x{args.image_size} to {args.out}")
    if args.sheet:
        pixels = (frames * 255).round().to(torch.uint8)
        shown = [draw_bounding_boxes(pixels[i], targets[i]["boxes"], colors="lime", width=1)
                 for i in range(0, args.frames, args.every)]
        write_png(make_grid(shown, nrow=len(shown), padding=2), args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
