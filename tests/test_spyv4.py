"""SPYv4 end to end: the network, the detection parts, FPTT over reads, the CLI, bad input."""

import json
import math
import warnings

import pytest
import torch

from fptt_ext.cli import main
from fptt_ext.data.synthetic import SHAPE_CLASSES, Mosaic, SyntheticShapes
from fptt_ext.data.voc import voc_collate
from fptt_ext.detection import YOLOLoss, decode, head_geometry, mean_average_precision
from fptt_ext.experiments.detect import evaluate_detector, fptt_reads_update, load_detector, train_detector
from fptt_ext.fptt import FPTT
from fptt_ext.fptt.state import StatefulModules
from fptt_ext.zoo import create_model, model_card
from fptt_ext.zoo.spyv4 import SPYv4, parameter_breakdown, spiking_neuron_count


def _batch(n=2, size=64, seed=0):
    return voc_collate([SyntheticShapes(n, image_size=size, seed=seed)[i] for i in range(n)])


# ------------------------------------------------------------------ the network
@pytest.mark.parametrize("size", [416, 320])
def test_full_width_heads_and_counts(size):
    net = create_model("spyv4")
    with torch.no_grad():
        p32, p16 = net(torch.rand(1, 3, size, size))
    assert p32.shape == (1, 75, size // 32, size // 32)
    assert p16.shape == (1, 75, size // 16, size // 16)
    assert len(net.spiking_layers()) == 19
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and "gate" not in str(m)]
    if size == 416:
        b = parameter_breakdown(net)
        assert b["total"] == model_card("spyv4")["num_params"] == 21_984_694
        # the papers' ~14M: the convs plus one conv gate per layer (neuron="ltc-minus")
        assert 13.5e6 < parameter_breakdown(create_model("spyv4", neuron="ltc-minus"))["total"] < 14.5e6
        assert 6.0e6 < spiking_neuron_count(net, 416) < 6.3e6
        assert len(convs) > 21  # 19 spiking convs + 2 heads, plus the gates' convs


def test_only_binary_spikes_between_spiking_layers():
    net = SPYv4(num_classes=5, width=0.25)
    seen = []

    def check(mod, inp, out):
        seen.append(mod)
        x = inp[0]
        assert torch.equal(x, (x > 0.5).float()), f"non-binary input to {mod}"

    convs = [m.conv for m in net.spiking_layers()[1:]] + [net.head32, net.head16]
    hooks = [c.register_forward_hook(check) for c in convs]
    x, _ = _batch(2, 128)
    for _ in range(3):
        net(x)
    for h in hooks:
        h.remove()
    assert len(seen) == 3 * len(convs) == 3 * 20
    rates = []
    hooks = [m.register_forward_hook(lambda mod, i, o: rates.append(o.mean().item())) for m in net.spiking_layers()]
    net(x)
    assert all(0.0 < r < 1.0 for r in rates)  # neither silent nor saturated
    for h in hooks:
        h.remove()


def test_multi_step_mode_and_backends():
    x = torch.rand(3, 1, 3, 64, 64)
    for backend in ("snntorch", "spikingjelly"):
        net = SPYv4(num_classes=2, width=0.125, backend=backend, step_mode="m")
        p32, p16 = net(x)
        assert p32.shape == (3, 1, 21, 2, 2) and p16.shape == (3, 1, 21, 4, 4)


@pytest.mark.parametrize("bad, err, match", [
    (torch.rand(1, 1, 64, 64), ValueError, "RGB"),
    (torch.rand(1, 4, 64, 64), ValueError, "RGB"),
    (torch.rand(1, 3, 100, 100), ValueError, "multiples of 32"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point"),
])
def test_bad_images_are_refused(bad, err, match):
    with pytest.raises(err, match=match):
        SPYv4(num_classes=2, width=0.125)(bad)


# ------------------------------------------------------------------ detection parts
def test_decode_and_nms_on_a_hand_made_prediction():
    anchors = [torch.tensor([[0.25, 0.25], [0.5, 0.5]])]
    logits = torch.full((1, 2, 7, 4, 4), -10.0)  # [B, anchors, 5 + 2 classes, gh, gw]
    # anchor 0, cell (1, 2): centre (2.5/4, 1.5/4) of a 64x64 image, size 16x16, class 1, score ~1
    logits[0, 0, :4, 1, 2] = 0.0
    logits[0, 0, 4, 1, 2] = 10.0
    logits[0, 0, 6, 1, 2] = 10.0
    # a weaker duplicate of the same object (same class, IoU > 0.45): removed by NMS
    # (anchor 1, twice anchor 0's size, shrunk by exp(tw) = 1/2, shifted by 0.4 px)
    logits[0, 1, :4, 1, 2] = torch.tensor([0.2, 0.0, -0.6931, -0.6931])
    logits[0, 1, 4, 1, 2] = 1.0
    logits[0, 1, 6, 1, 2] = 10.0
    # anchor 1 in cell (3, 0), class 0: kept
    logits[0, 1, :4, 3, 0] = 0.0
    logits[0, 1, 4, 3, 0] = 10.0
    logits[0, 1, 5, 3, 0] = 10.0
    d = decode([logits.reshape(1, 14, 4, 4)], anchors, (64, 64), conf_thresh=0.25)[0]
    order = d["labels"].argsort()
    # the large box (32x32 centred at (8, 56)) is clipped to the image
    assert torch.allclose(d["boxes"][order], torch.tensor([[0.0, 40.0, 24.0, 64.0], [32.0, 16.0, 48.0, 32.0]]),
                          atol=1e-3)
    assert d["labels"][order].tolist() == [0, 1]
    assert torch.all(d["scores"] > 0.99)


def test_map_perfect_and_hand_checked():
    gt = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]]), "labels": torch.tensor([0, 1])},
          {"boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0]]), "labels": torch.tensor([1])}]
    perfect = [{"boxes": g["boxes"], "scores": torch.ones(len(g["labels"])), "labels": g["labels"]} for g in gt]
    assert mean_average_precision(perfect, gt)["map50"] == pytest.approx(1.0)
    # class 0: hit -> AP 1; class 1: hit at 0.9, a false positive at 0.8 (IoU < 0.5), the second
    # object found at 0.7: precision 1 to recall 0.5, then 2/3 to recall 1 -> AP = (51 + 50 * 2/3) / 101
    det = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0], [60.0, 60.0, 70.0, 70.0]]),
            "scores": torch.tensor([0.6, 0.9, 0.8]), "labels": torch.tensor([0, 1, 1])},
           {"boxes": torch.tensor([[6.0, 5.0, 25.0, 25.0]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])}]
    r = mean_average_precision(det, gt, class_names=("a", "b"))
    ap1 = (51 + 50 * 2 / 3) / 101
    assert r["per_class"]["a"] == pytest.approx(1.0)
    assert r["per_class"]["b"] == pytest.approx(ap1, abs=1e-4)
    assert r["map50"] == pytest.approx((1 + ap1) / 2, abs=1e-4)
    # a "difficult" object is neither a miss nor makes its detection a false positive
    # (here: the top-scored class-1 detection is on it; ignored, so class 1 has AP 1 ...)
    gt[1]["difficult"] = torch.tensor([True])
    det[1]["scores"] = torch.tensor([0.95])
    assert mean_average_precision(det, gt)["map50"] == pytest.approx(1.0)
    # (... while without that object it is a false positive at the top: AP 1/2 for class 1)
    gt[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    assert mean_average_precision(det, gt)["map50"] == pytest.approx(0.75, abs=1e-4)


def test_loss_decreases_over_fptt_updates_on_a_fixed_batch():
    torch.manual_seed(0)
    net = SPYv4(num_classes=len(SHAPE_CLASSES), width=0.125)
    crit = YOLOLoss.for_model(net)
    fptt = FPTT(net.parameters(), torch.optim.Adagrad(net.parameters(), lr=1e-2))
    x, t = _batch(2, 64)
    first = None
    for _ in range(8):
        losses, parts = fptt_reads_update(net, x, t, crit, fptt, T=2)
        first = losses[0] if first is None else first
    assert set(parts) == {"box", "obj", "cls"}
    assert losses[-1] < 0.7 * first


# ------------------------------------------------------------------ reads and state
@pytest.mark.parametrize("T", [4, 8])
def test_reads_run_and_state_is_reset_between_images(T):
    torch.manual_seed(0)
    net = SPYv4(num_classes=len(SHAPE_CLASSES), width=0.125).eval()
    states = StatefulModules(net)
    a, _ = _batch(1, 64, seed=1)
    b, _ = _batch(1, 64, seed=2)

    def reads(x):
        states.reset()
        with torch.no_grad():
            return [net(x)[0] for _ in range(T)]

    alone = reads(a)
    reads(b)
    after_b = reads(a)
    assert all(torch.equal(u, v) for u, v in zip(alone, after_b))
    assert not torch.equal(alone[0], alone[-1])  # the state does carry across the reads of one image
    r = evaluate_detector(net, SyntheticShapes(2, image_size=64, seed=3), T=T, batch_size=2)
    assert len(r["map50_per_read"]) == T and r["map50"] == r["map50_per_read"][-1] and r["n"] == 2


class _SecondReadDetector(torch.nn.Module):
    """A stand-in detector (one head, 2x2 grid, one anchor, 2 classes) that sees nothing on its
    first read of an image and, from the second read on, exactly the box [40, 40, 56, 56] of
    class 1 (the decode example's logits: centre of cell (1, 1), the anchor's size)."""

    anchors, anchor_masks = torch.tensor([[0.25, 0.25]]), ((0,),)

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # (evaluate_detector reads the device off it)
        self.reads = 0

    def forward(self, images):
        self.reads += 1
        logits = torch.full((images.shape[0], 7, 2, 2), -10.0)
        if self.reads > 1:
            logits[:, :4, 1, 1], logits[:, 4, 1, 1], logits[:, 6, 1, 1] = 0.0, 10.0, 10.0
        return [logits]


def test_evaluate_detector_scores_each_read():
    image = (torch.zeros(3, 64, 64), {"boxes": torch.tensor([[40.0, 40.0, 56.0, 56.0]]), "labels": torch.tensor([1])})
    r = evaluate_detector(_SecondReadDetector(), [image], T=3, batch_size=1)
    assert r["map50_per_read"] == [0.0, 1.0, 1.0] and r["map50"] == 1.0 and r["n"] == 1


# ------------------------------------------------------------------ data
def test_synthetic_set_and_mosaic():
    ds = SyntheticShapes(6, image_size=64, seed=4)
    for i in range(6):
        img, t = ds[i]
        assert img.shape == (3, 64, 64) and 0 <= img.min() and img.max() <= 1
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all() and (t["boxes"] >= 0).all() and (t["boxes"] <= 64).all()
        assert set(t["labels"].tolist()) <= set(range(len(SHAPE_CLASSES)))
    assert not torch.equal(ds[0][0], SyntheticShapes(6, image_size=64, seed=5)[0][0])
    m = Mosaic(ds, seed=0)
    img, t = m[0]
    assert img.shape == (3, 64, 64) and len(t["boxes"]) == len(t["labels"]) == len(t["difficult"])
    assert (t["boxes"][:, 2:] - t["boxes"][:, :2] >= 2).all()
    m.set_epoch(1)
    assert not torch.equal(m[0][0], img)
    with pytest.raises(ValueError, match="unknown shapes"):
        SyntheticShapes(2, classes=("circle", "hexagon"))


def test_voc_annotations_with_bad_objects():
    from fptt_ext.data.voc import _objects

    def ann(name, box):
        return {"annotation": {"object": [{"name": name, "bndbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), box))}]}}

    with pytest.raises(ValueError, match="unknown class name 'unicorn'"):
        _objects(ann("unicorn", (1, 1, 5, 5)), "x.xml")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        boxes, labels, _ = _objects(ann("dog", (5, 1, 5, 9)), "x.xml")
    assert boxes.shape == (0, 4) and "degenerate" in str(w[0].message)
    # an image without objects is a valid (empty) target for the loss
    net = SPYv4(num_classes=20, width=0.125)
    loss, _ = YOLOLoss.for_model(net)(net(torch.rand(1, 3, 64, 64)), [{"boxes": boxes, "labels": labels}])
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ driver and CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("spyv4run")
    s = train_detector(dataset="synthetic", image_size=64, T=2, n_train=4, n_test=2, batch_size=2, epochs=1,
                       out_dir=out, progress=False)
    assert s["batches"] == 2 and (out / "model.safetensors").is_file() and (out / "curves.png").is_file()
    return out, s


def test_resume_continues_exactly(run_dir, tmp_path):
    _, full = run_dir
    kw = {"dataset": "synthetic", "image_size": 64, "T": 2, "n_train": 4, "n_test": 2, "batch_size": 2,
          "epochs": 1, "out_dir": tmp_path, "progress": False}
    assert train_detector(stop_after=1, **kw) == {"stopped_at_step": 1}
    resumed = train_detector(resume=True, **kw)
    assert resumed["map50_per_read"] == full["map50_per_read"]
    a, _ = load_detector(run_dir[0])
    b, _ = load_detector(tmp_path)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2]
    with pytest.raises(ValueError, match="other settings"):
        train_detector(resume=True, **{**kw, "T": 3})


def test_cli_detect_on_images_and_video(run_dir, tmp_path, capsys):
    import av  # a declared dependency (video decoding)
    import numpy as np
    from PIL import Image

    out, _ = run_dir
    ds = SyntheticShapes(3, image_size=64, seed=9)
    pixels = lambda img: (img * 255).byte().permute(1, 2, 0).numpy()  # [H, W, C] uint8, as PIL takes it
    grey = tmp_path / "grey.png"
    Image.fromarray(pixels(ds[0][0][:1])[..., 0]).save(grey)  # a grey image is converted to RGB
    rgb = tmp_path / "wide.png"
    Image.fromarray(pixels(torch.cat([ds[1][0], ds[2][0]], 2))).save(rgb)  # 64x128: letterboxed
    assert main(["detect", str(grey), str(rgb), "--run", str(out), "--out", str(tmp_path / "img"), "--conf", "0"]) == 0
    assert (tmp_path / "img" / "grey.png").is_file() and (tmp_path / "img" / "raster.png").is_file()
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(3):
            frame = np.ascontiguousarray((ds[i][0] * 255).byte().permute(1, 2, 0).numpy())
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    capsys.readouterr()
    assert main(["detect", str(video), "--run", str(out), "--out", str(tmp_path / "vid"), "--max-frames", "2"]) == 0
    assert "2 frames" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "vid").iterdir()) == ["clip_00000.png", "clip_00001.png", "raster.png"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["detect", str(bad), "--run", str(out), "--out", str(tmp_path / "x")]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_cli_train_detector_errors(tmp_path, capsys):
    assert main(["train-detector", "--image-size", "100", "--out", str(tmp_path)]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["train-detector", "--dataset", "voc", "--root", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "PASCAL VOC" in capsys.readouterr().err
    assert main(["train-detector", "--model", "scnn_fmnist", "--out", str(tmp_path)]) == 2
    assert "not a detector" in capsys.readouterr().err
    assert head_geometry(create_model("spyv4_tiny"))[0].shape == (3, 2)


def _voc_tree(base):
    """A tiny VOCdevkit (2007 trainval + test, 2012 trainval) in the real on-disk format."""
    from PIL import Image

    obj = ("<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
           "<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>")
    for year, splits in (("2007", ("trainval", "test")), ("2012", ("trainval",))):
        voc = base / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        for split in splits:
            ids = [f"{year}_{split}_{i}" for i in range(2)]
            for i, image_id in enumerate(ids):
                Image.new("RGB", (90, 60), (30 * i, 120, 200)).save(voc / "JPEGImages" / f"{image_id}.jpg")
                objs = obj.format(n="dog", a=10, b=10, c=50, d=40) + obj.format(n="person", a=60, b=5, c=80, d=55)
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    f"<annotation><filename>{image_id}.jpg</filename><size><width>90</width><height>60</height>"
                    f"<depth>3</depth></size>{objs}</annotation>")
            (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def test_voc_training_command_runs_on_a_tiny_vocdevkit(tmp_path, capsys):
    _voc_tree(tmp_path / "data")
    code = main(["train-detector", "--dataset", "voc", "--root", str(tmp_path / "data"), "--model", "spyv4",
                 "--image-size", "64", "--T", "1", "--epochs", "1", "--batch-size", "4", "--mosaic-epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "on 2 voc test images" in printed and "21,984,694 parameters" in printed
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["classes"][14] == "person" and cfg["n_train"] == 4


def test_cosine_schedule_anneals_per_batch_and_resumes_exactly(tmp_path):
    kw = {"dataset": "synthetic", "image_size": 32, "T": 1, "n_train": 6, "n_test": 2, "batch_size": 2,
          "epochs": 2, "optimizer": "adam", "lr": 1e-3, "lr_schedule": "cosine", "progress": False}
    full = train_detector(out_dir=tmp_path / "full", **kw)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
           if "loss" in json.loads(x)]
    # 6 batches over the run: lr_k = 1e-3 (1 + cos(pi k / 6)) / 2, k = 0..5
    assert lrs == pytest.approx([1e-3 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)])
    assert train_detector(out_dir=tmp_path / "part", stop_after=4, **kw) == {"stopped_at_step": 4}
    resumed = train_detector(out_dir=tmp_path / "part", resume=True, **kw)
    assert resumed["map50_per_read"] == full["map50_per_read"]
    assert [e["epoch"] for e in full["evaluations"]] == [1, 2]  # every evaluation of the run, in order
    assert full["evaluations"][-1]["map50_per_read"] == full["map50_per_read"]
    a, _ = load_detector(tmp_path / "full")
    b, _ = load_detector(tmp_path / "part")
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        train_detector(out_dir=tmp_path / "bad", **{**kw, "lr_schedule": "step"})


def test_a_detector_run_is_published_and_scored_like_its_card(run_dir, tmp_path, monkeypatch, capsys):
    from fptt_ext.zoo import evaluate
    from fptt_ext.zoo.publish import publish

    monkeypatch.setenv("FPTT_EXT_ZOO", str(tmp_path))
    out, summary = run_dir
    card = publish("spyv4_tiny", out, notes="a tiny test run")
    # scored on the run's own test set (64x64, 2 images, 2 reads), as the run's summary was
    assert card["test_n"] == 2 and card["map50"] == round(100 * summary["map50"], 2)
    assert card["map50_per_read"] == [round(100 * m, 2) for m in summary["map50_per_read"]]
    stored = json.loads((tmp_path / "spyv4_tiny.json").read_text())
    assert stored["trained_with"]["image_size"] == 64 and stored["notes"] == "a tiny test run"
    assert evaluate("spyv4_tiny")["map50"] == card["map50"]  # the published weights, hash checked
    assert main(["eval", "spyv4_tiny"]) == 0
    assert f"test mAP@0.5: {card['map50']:.2f}% on 2 images" in capsys.readouterr().out
