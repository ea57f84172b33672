"""Run a trained SPYv4 on image files or a video: annotated frames and a spike raster plot.

Each frame (an image file, or a frame of the video) is converted to RGB, letterboxed
to the run's image size and read ``T`` times; the detections after the last read are
drawn on the original frame (``torchvision.utils.draw_bounding_boxes``) and written as
PNG. The neuron states are reset between frames, unless ``keep_state`` (a continuous
stream, as the papers' webcam demo). The spikes of a shallow (first) and a deep (17th,
the last before the stride-32 head) spiking layer at every read are drawn as a raster
plot, ``raster.png`` (the papers' Fig. 3c).

Videos are decoded with PyAV (``pip install av``): torchvision 0.22+ no longer
decodes video (``torchvision.io.read_video`` was removed in favour of TorchCodec). Images are
read and written with Pillow, as torchvision's own image decoding and encoding
(``torchvision.io``) are deprecated since torchvision 0.29.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..detection.boxes import head_geometry, letterbox, unletterbox
from ..detection.decode import decode
from ..fptt.state import StatefulModules
from .detect import load_detector

__all__ = ["VIDEO_SUFFIXES", "detect_files", "read_frames", "read_image", "write_png", "write_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as a ``uint8 [3, H, W]`` RGB tensor (grey, RGBA and palette images converted).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "grey.png"
    >>> write_png(torch.full((1, 2, 3), 128, dtype=torch.uint8), path)
    >>> read_image(path)[:, 0, 0].tolist()
    [128, 128, 128]
    """
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable image ({err})") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def write_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a ``uint8 [C, H, W]`` tensor (C = 1 grey or 3 RGB) as a PNG file.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "red.png"
    >>> red = torch.zeros(3, 2, 2, dtype=torch.uint8); red[0] = 255
    >>> write_png(red, path); torch.equal(read_image(path), red)
    True
    """
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"write_png takes a uint8 [1 or 3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    pixels = image.permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(path, format="PNG")


def write_video(frames: torch.Tensor, path: str | os.PathLike, fps: int = 10) -> None:
    """Write ``frames`` ``[F, 3, H, W]`` (float in [0, 1] or uint8) as an H.264 video with PyAV.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "grey.mp4"
    >>> write_video(torch.full((4, 3, 32, 32), 0.5), path)
    >>> [frame.shape for _, frame in read_frames([path])]
    [torch.Size([3, 32, 32]), torch.Size([3, 32, 32]), torch.Size([3, 32, 32]), torch.Size([3, 32, 32])]
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video takes frames [F, 3, H, W] with F >= 1, got {tuple(frames.shape)}")
    try:
        import av
    except ImportError as err:
        raise ValueError("writing video needs PyAV: pip install av") from err
    if frames.is_floating_point():
        frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = frames.shape[2], frames.shape[3], "yuv420p"
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())  # flush


def read_frames(paths, max_frames: int | None = None):
    """Yield ``(name, uint8 [3, H, W] RGB frame)`` from image files or one video file.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "grey.png"
    >>> write_png(torch.full((1, 20, 30), 128, dtype=torch.uint8), path)   # a grey image
    >>> [(name, frame.shape, frame.dtype) for name, frame in read_frames([path])]
    [('grey', torch.Size([3, 20, 30]), torch.uint8)]
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist; pass image files (jpg/png) or a video file")
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos and len(paths) > 1:
        raise ValueError("pass either image files or a single video file, not both / several videos")
    if videos:
        try:
            import av
        except ImportError as err:
            raise ValueError("reading video needs PyAV: pip install av (torchvision no longer decodes video)") \
                from err
        try:
            with av.open(str(videos[0])) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if max_frames is not None and i >= max_frames:
                        break
                    yield f"{videos[0].stem}_{i:05d}", torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(
                        2, 0, 1).contiguous()
        except av.error.FFmpegError as err:
            raise ValueError(f"{videos[0]} is not a readable video ({err})") from err
        return
    for i, p in enumerate(paths):
        if max_frames is not None and i >= max_frames:
            break
        yield p.stem, read_image(p)


def detect_files(inputs, *, run_dir: str | os.PathLike, out_dir: str | os.PathLike = "runs/detections",
                 T: int | None = None, conf_thresh: float = 0.25, iou_thresh: float = 0.45,
                 max_frames: int | None = None, keep_state: bool = False, raster_neurons: int = 200) -> dict:
    """Detect objects in ``inputs`` with the model of ``run_dir``; see the module docstring.

    Returns ``{"frames": n, "detections": total boxes drawn, "raster": path, "per_frame": [...]}``.

    >>> import tempfile
    >>> from fptt_ext.experiments.detect import train_detector
    >>> run, work = tempfile.mkdtemp(), Path(tempfile.mkdtemp())
    >>> _ = train_detector(image_size=32, T=1, n_train=2, n_test=1, batch_size=2, out_dir=run, progress=False)
    >>> write_png(torch.zeros(3, 40, 60, dtype=torch.uint8), work / "frame.png")
    >>> r = detect_files([work / "frame.png"], run_dir=run, out_dir=work / "out", T=2)
    >>> r["frames"], r["per_frame"][0]["frame"], sorted(p.name for p in (work / "out").iterdir())
    (1, 'frame', ['frame.png', 'raster.png'])
    """
    from torchvision.utils import draw_bounding_boxes

    model, cfg = load_detector(run_dir)
    T = cfg["T"] if T is None else T
    S, classes = cfg["image_size"], cfg["classes"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = model.spiking_layers()
    watched = {"shallow (layer 1)": layers[0], "deep (layer 17)": layers[16]}
    spikes = {k: [] for k in watched}
    picks = {}

    def hook(name):
        def record(mod, inp, o):
            flat = o[0].flatten()
            if name not in picks:  # a fixed random subset of the layer's neurons
                g = torch.Generator().manual_seed(0)
                picks[name] = torch.randperm(flat.numel(), generator=g)[:raster_neurons]
            spikes[name].append(flat[picks[name]].bool())
        return record

    hooks = [m.register_forward_hook(hook(k)) for k, m in watched.items()]
    states, anchors = StatefulModules(model), head_geometry(model)
    per_frame, total = [], 0
    try:
        with torch.no_grad():
            for n, (name, frame) in enumerate(read_frames(inputs, max_frames)):
                x, scale, offset = letterbox(frame.float() / 255.0, S)
                if n == 0 or not keep_state:
                    states.reset()
                for _ in range(T):
                    outputs = model(x[None])
                det = decode(outputs, anchors, (S, S), conf_thresh=conf_thresh, iou_thresh=iou_thresh)[0]
                boxes = unletterbox(det["boxes"], scale, offset, frame.shape[1:])
                labels = [f"{classes[int(c)]} {float(s):.2f}" for c, s in zip(det["labels"], det["scores"])]
                drawn = draw_bounding_boxes(frame, boxes, labels, colors="red", width=2) if len(boxes) else frame
                write_png(drawn, out / f"{name}.png")
                per_frame.append({"frame": name, "boxes": boxes.tolist(), "labels": [classes[int(c)] for c in
                                  det["labels"]], "scores": det["scores"].tolist()})
                total += len(boxes)
    finally:
        for h in hooks:
            h.remove()
        states.reset()
    if not per_frame:
        raise ValueError(f"no frames read from {list(map(str, inputs))}")
    raster = out / "raster.png"
    _raster_plot(spikes, T, raster)
    return {"frames": len(per_frame), "detections": total, "raster": str(raster), "per_frame": per_frame}


def _raster_plot(spikes: dict, T: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(spikes), 1, figsize=(10, 2.2 * len(spikes)), sharex=True, squeeze=False)
    for ax, (name, steps) in zip(axes[:, 0], spikes.items()):
        s = torch.stack(steps).T  # [neurons, steps]
        n_idx, t_idx = torch.nonzero(s, as_tuple=True)
        ax.scatter(t_idx.numpy(), n_idx.numpy(), s=2, marker="|", color="k")
        ax.set(ylabel="neuron", title=f"{name}: {100 * s.float().mean():.1f}% of neurons spike per read",
               xlim=(-0.5, s.shape[1] - 0.5))
        for b in range(T, s.shape[1], T):  # frame boundaries
            ax.axvline(b - 0.5, color="tab:blue", lw=0.5, alpha=0.5)
    axes[-1, 0].set_xlabel(f"time step (read); {T} reads per frame, blue lines between frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
