"""`fptt-ext train-events` on tiny DVS-Gesture recordings in tonic's on-disk layout."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fptt_ext.cli import main
from fptt_ext.zoo import evaluate


@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("gesture"), np.random.default_rng(0)
    for split, files in {"ibmGestureTrain": [("user01_led", 0), ("user01_led", 3), ("user02_led", 5),
                                             ("user02_led", 10)],
                         "ibmGestureTest": [("user24_natural", 3), ("user24_natural", 5)]}.items():
        for sub, label in files:
            folder = root / "DVSGesture" / split / sub
            folder.mkdir(parents=True, exist_ok=True)
            n = int(rng.integers(200, 400))
            ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 500, n))], axis=1)
            np.save(folder / f"{label}.npy", ev)
    return root


def _args(root, out, epochs):
    return ["train-events", "--model", "srnn_dvsgesture", "--root", str(root), "--T", "3", "--batch-size", "2",
            "--epochs", str(epochs), "--out", str(out), "--no-progress"]


def test_train_events_writes_a_run_that_resumes_to_the_same_weights(gesture_root, tmp_path, capsys):
    assert main(_args(gesture_root, tmp_path / "full", 2)) == 0
    assert "on 2 dvs-gesture test recordings" in capsys.readouterr().out
    assert main(_args(gesture_root, tmp_path / "resumed", 1)) == 0
    ckpt = tmp_path / "resumed" / "checkpoint.pt"
    ck = torch.load(ckpt, weights_only=True)
    ck["seconds"]["compute"] = 1e6  # marks the time before the resume
    torch.save(ck, ckpt)
    assert main([*_args(gesture_root, tmp_path / "resumed", 2), "--resume"]) == 0
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["time_complete"] and 1e6 < summary["seconds"] < 1e6 + 600  # kept, plus the second epoch
    full, resumed = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("full", "resumed"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "test_acc" in x] == [1, 2] and sum("loss" in x for x in lines) == 4
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["encoding"] == "frames32" and cfg["model_kwargs"] == {"neuron": "ltc"}
    assert cfg["clip"] == 1.0  # the authors' clipping by default
    assert all("train_acc" not in x for x in lines)  # no accuracy read after the batch's own updates


def test_train_events_clip_option(gesture_root, tmp_path, capsys):
    assert main([*_args(gesture_root, tmp_path / "noclip", 1), "--clip", "0"]) == 0
    assert json.loads((tmp_path / "noclip" / "config.json").read_text())["clip"] is None
    assert main([*_args(gesture_root, tmp_path / "bad", 1), "--clip", "-2"]) == 2
    assert "--clip: expected a finite norm >= 0" in capsys.readouterr().err


def test_zoo_evaluate_reads_event_recordings(gesture_root):
    from spikingjelly.activation_based import functional

    from fptt_ext.data.events import event_split
    from fptt_ext.zoo import create_model, model_card

    torch.manual_seed(0)
    model = create_model("srnn_dvsgesture").eval()
    r = evaluate(model, root=gesture_root)
    # the same score by hand: each test recording's frames one step at a time, the class at the last step
    card = model_card("srnn_dvsgesture")
    test = event_split("dvs-gesture", "test", gesture_root, card["T"], card["encoding"])
    predicted = []
    with torch.no_grad():
        for frames, _ in test:
            functional.reset_net(model)
            predicted.append(int([model(f[None]) for f in frames][-1].argmax()))
    labels = [int(label) for _, label in test]
    assert r == {"test_accuracy": 100.0 * sum(p == y for p, y in zip(predicted, labels)) / len(labels), "n": 2}


def test_train_events_refuses_image_models_and_missing_data(tmp_path, capsys):
    assert main(["train-events", "--model", "ostl_rmnist", "--out", str(tmp_path / "x")]) == 2
    assert "not event recordings" in capsys.readouterr().err
    assert main(["train-events", "--model", "scnn_dvsgesture", "--root", str(tmp_path), "--out",
                 str(tmp_path / "y")]) == 2
    assert "DVSGesture" in capsys.readouterr().err
