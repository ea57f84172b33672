"""`fptt-ext train` / `fptt-ext eval` end to end, on tiny budgets of the real mnist5k images.

The reference run (module fixture, through the command line) trains 2 epochs of 4 batches
(200 images, batch 50, T = 2, 16 hidden units) and tests on 100 images after each epoch; the
resume tests rebuild it from interrupted runs and must match it bit for bit.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fptt_ext.cli import main
from fptt_ext.data import images
from fptt_ext.experiments import classify
from fptt_ext.experiments.classify import evaluate_run, train_classifier
from fptt_ext.fptt.fused import compiler_available

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset": "mnist5k", "encoding": "rate", "T": 2, "hidden": (16,), "batch_size": 50, "epochs": 2,
        "limit_train": 200, "limit_test": 100, "seed": 0, "checkpoint_every": 1000, "progress": False}
TINY_ARGS = ["--dataset", "mnist5k", "--encoding", "rate", "--T", "2", "--hidden", "16", "--batch-size", "50",
             "--epochs", "2", "--limit-train", "200", "--limit-test", "100", "--seed", "0",
             "--checkpoint-every", "1000", "--no-progress"]
N_TRAIN_RECORDS, N_TEST_RECORDS = 8, 2


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_same_run(run: Path, ref: Path) -> None:
    assert _metrics(run) == _metrics(ref)  # every loss, accuracy, lr and test accuracy, exactly
    a, b = _weights(run), _weights(ref)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run, ref))
    assert sa["test_acc"] == sb["test_acc"] and sa["batches"] == sb["batches"]


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fptt-ext")
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted tiny run, through `fptt-ext train`: (run dir, exit code, stdout)."""
    run = tmp_path_factory.mktemp("reference")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", *TINY_ARGS, "--out", str(run)])
    return run, code, out.getvalue()


# ------------------------------------------------------------------------- train: files
def test_train_writes_all_files(reference):
    run, code, stdout = reference
    assert code == 0
    for name in ("metrics.jsonl", "checkpoint.pt", "model.safetensors", "curves.png", "summary.json", "config.json"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.glob("*.tmp"))

    records = _metrics(run)  # each line is one JSON object
    train = [r for r in records if "loss" in r]
    tests = [r for r in records if "test_acc" in r]
    assert len(train) == N_TRAIN_RECORDS and len(tests) == N_TEST_RECORDS
    # a train record's step is its line number; a test record repeats the step of the batch before it
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6, 7, 8] and [r["step"] for r in tests] == [4, 8]
    assert ["loss" in r for r in records] == [True] * 4 + [False] + [True] * 4 + [False]
    for r in train:
        assert r.keys() >= {"step", "epoch", "batch", "loss", "lr"} and "train_acc" not in r
        assert 0 < r["loss"] < 10
    lrs = [r["lr"] for r in train]  # the card's recipe: lr 5e-4, one cosine annealing over the run, batch by batch
    assert lrs[0] == 5e-4 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-4
    assert [(r["epoch"], r["batch"]) for r in train] == [(e, b) for e in range(2) for b in range(4)]
    assert [r["epoch"] for r in tests] == [1, 2]
    assert tests[-1]["test_acc"] == json.loads((run / "summary.json").read_text())["test_acc"]
    assert all(float(r["test_acc"]).is_integer() for r in tests)  # k of the 100 test images, in percent
    assert train[-1]["loss"] < train[0]["loss"]  # it learns something

    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (2, 0)
    final = _weights(run)
    assert ck["model"].keys() == final.keys()
    assert all(torch.equal(ck["model"][k], final[k]) for k in final)
    assert final["layers.0.weight"].shape == (16, 784)  # 784 rate-coded pixels -> 16 hidden

    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dataset"] == "mnist5k" and cfg["T"] == 2 and cfg["model_kwargs"]["hidden"] == [16] and cfg["limit_test"] == 100
    assert cfg["limit_train"] == 200
    assert cfg["clip"] == 1.0  # the authors' gradient-norm clipping, by default
    assert (cfg["lr"], cfg["lr_schedule"], cfg["wbar_at_epoch_end"], cfg["K"]) == (5e-4, "cosine", True, None)  # the card's
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] == tests[-1]["test_acc"] and summary["test_n"] == 100
    assert summary["batches"] == N_TRAIN_RECORDS
    assert f"test accuracy: {summary['test_acc']:.2f}% on 100 mnist5k test images" in stdout


def test_monitor_is_a_held_out_accuracy(tmp_path):
    """The bar's figure: accuracy on test images never trained on, with the weights of that moment."""
    run = tmp_path / "monitored"
    assert main(["train", *TINY_ARGS, "--monitor-every", "2", "--no-wbar-at-epoch-end", "--out", str(run)]) == 0
    records = _metrics(run)
    monitored = [r for r in records if "heldout_acc" in r]
    assert [r["step"] for r in monitored] == [2, 4, 6, 8]
    tests = [r for r in records if "test_acc" in r]
    # the last batch of each epoch is monitored with the weights the epoch-end test then scores
    # (same 100 images, same rate-coding seed), so both figures must agree exactly
    assert [r["heldout_acc"] for r in monitored if r["step"] in (4, 8)] == [r["test_acc"] for r in tests]
    assert len({r["heldout_acc"] for r in monitored}) > 1


# ------------------------------------------------------------------------- eval
def test_eval_reproduces_logged_accuracy(reference, capsys):
    run = reference[0]
    summary = json.loads((run / "summary.json").read_text())
    r = evaluate_run(run)
    assert r == {"test_accuracy": summary["test_acc"], "n": 100}
    assert 10 < r["test_accuracy"] < 100  # a real score, not a constant (100 test images, all 10 classes)
    assert main(["eval", str(run)]) == 0
    assert f"test accuracy: {summary['test_acc']:.2f}% on 100 images" in capsys.readouterr().out
    assert evaluate_run(run, limit=20)["n"] == 20


def _copy_run(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


@pytest.mark.parametrize("change", ["hidden", "neuron", "depth"])
def test_eval_mismatched_weights(reference, tmp_path, capsys, change):
    run = _copy_run(reference[0], tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    kw = cfg["model_kwargs"]
    kw.update({"hidden": {"hidden": [17], "depth": [16, 16]}.get(change, kw["hidden"]),
               "neuron": "alif" if change == "neuron" else kw["neuron"]})
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["eval", str(run)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "does not match" in line and "model.safetensors" in line


def test_eval_missing_or_broken_run(tmp_path, reference, capsys):
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "is neither a zoo model nor a run directory" in line and "ostl_rmnist, " in line  # lists the zoo
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 2
    assert "config.json is missing" in _one_line_error(capsys.readouterr().err)
    run = _copy_run(reference[0], tmp_path / "run")
    (run / "model.safetensors").write_bytes(b"garbage")
    assert main(["eval", str(run)]) == 2
    assert "unreadable" in _one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------------- train: bad input
@pytest.mark.parametrize("extra, message", [
    (["--dataset", "cifar10"], "invalid choice: 'cifar10'"),
    (["--T", "0"], "argument --T: expected an integer >= 1, got 0"),
    (["--T", "-4"], "argument --T: expected an integer >= 1, got -4"),
    (["--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["--hidden", "0"], "expected an integer >= 1"),
    (["--method", "rtrl"], "unknown method 'rtrl'"),
    (["--limit-train", "zero"], "expected an integer"),
    (["--clip", "-1"], "--clip: expected a finite norm >= 0"),
    (["--clip", "inf"], "--clip: expected a finite norm >= 0"),
    (["--clip", "big"], "--clip: expected a number"),
    (["--K", "0"], "--K: expected an integer >= 1"),
    (["--lr-schedule", "step"], "lr_schedule='step' needs lr_step"),
    (["--monitor-every", "-1"], "monitor_every must be >= 0"),
])
def test_train_bad_input(tmp_path, capsys, extra, message):
    assert main(["train", *TINY_ARGS, "--out", str(tmp_path / "run"), *extra]) == 2
    assert message in _one_line_error(capsys.readouterr().err)


def test_train_recipe_options_reach_the_trainer(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--epochs", "1", "--out", str(run), "--clip", "0", "--K", "1",
                 "--divergence", "none", "--wbar-at-epoch-end", "--lr-schedule", "cosine"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["clip"], cfg["K"], cfg["divergence"], cfg["wbar_at_epoch_end"], cfg["lr_schedule"]) == \
        (None, 1, "none", True, "cosine")
    lrs = [r["lr"] for r in _metrics(run) if "loss" in r]
    # cosine to 0 over the run, stepped per batch: the record holds the lr the batch trained with
    assert lrs[0] == 5e-4 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 2e-4


def test_fused_fptt_reaches_the_optimizer(tmp_path, monkeypatch):
    from fptt_ext.fptt import optimizer

    seen = []  # the flag is tested here, not the compiler (None: FPTT keeps its foreach kernels)
    monkeypatch.setattr(optimizer, "fused_updates", lambda: seen.append(True))
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--epochs", "1", "--out", str(run), "--fused-fptt"]) == 0
    assert json.loads((run / "config.json").read_text())["fused_fptt"] is True and seen == [True]


def test_cosine_per_epoch_restarts_every_epoch(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(run), "--lr-schedule", "cosine-per-epoch"]) == 0
    lrs = [r["lr"] for r in _metrics(run) if "loss" in r]  # 2 epochs of 4 batches
    assert lrs[0] == lrs[4] == 5e-4 and lrs[:4] == sorted(lrs[:4], reverse=True) and lrs[3] < 2e-4
    assert lrs[:4] == pytest.approx(lrs[4:])


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    empty = tmp_path / "system"
    empty.mkdir()
    monkeypatch.setattr(images, "SYSTEM_DATA_DIR", empty)
    monkeypatch.setenv("FPTT_EXT_CACHE", str(tmp_path / "cache"))
    return empty


def test_train_missing_dataset(tmp_path, monkeypatch, capsys, no_system_data):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FPTT_EXT_DATA", str(data))
    args = ["train", "--dataset", "fashion-mnist", "--T", "2", "--hidden", "16", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "fashion-mnist not found" in line and str(data) in line and str(no_system_data) in line
    assert "dataset-fashion-mnist" in line


@pytest.mark.parametrize("damage", ["truncated-gzip", "bad-idx-header"])
def test_train_corrupted_dataset(tmp_path, monkeypatch, capsys, no_system_data, damage, fashion_mnist_gz):
    data = tmp_path / "data" / "fashion-mnist"
    data.mkdir(parents=True)
    for gz in fashion_mnist_gz.glob("*.gz"):
        (data / gz.name).symlink_to(gz)
    bad = data / "t10k-labels-idx1-ubyte.gz"
    raw = bad.read_bytes()
    bad.unlink()
    if damage == "truncated-gzip":
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        labels = gzip.decompress(raw)
        bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x03\xe8" + labels[8:]))  # says 1000 labels
    monkeypatch.setenv("FPTT_EXT_DATA", str(tmp_path / "data"))
    args = ["train", "--dataset", "fashion-mnist", "--T", "2", "--hidden", "16", "--limit-train", "50",
            "--limit-test", "50", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "corrupted" in line and str(data) in line


# ------------------------------------------------------------------------- resume
def test_stop_and_resume_equals_uninterrupted(reference, tmp_path):
    run = tmp_path / "run"
    assert train_classifier(**TINY, out_dir=run, stop_after=3) == {"stopped_at_step": 3}  # mid-epoch
    assert len(_metrics(run)) == 3 and not (run / "model.safetensors").exists()
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"], ck["step"]) == (0, 3, 3)

    assert train_classifier(**TINY, out_dir=run, stop_after=1, resume=True) == {"stopped_at_step": 4}
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (0, 4)  # the last batch of the epoch, before its test

    train_classifier(**TINY, out_dir=run, resume=True)
    _assert_same_run(run, reference[0])


@pytest.mark.skipif(not compiler_available(), reason="no C++ compiler for torch.compile's CPU backend")
def test_a_fused_fptt_run_resumes_to_the_same_result(tmp_path):
    # the fused step keeps its state in the optimizer's and FPTT's state dicts, which the checkpoint holds
    ref, run = tmp_path / "ref", tmp_path / "run"
    train_classifier(**TINY, fused_fptt=True, out_dir=ref)
    assert train_classifier(**TINY, fused_fptt=True, out_dir=run, stop_after=3) == {"stopped_at_step": 3}
    train_classifier(**TINY, fused_fptt=True, out_dir=run, resume=True)
    _assert_same_run(run, ref)


def test_the_training_time_adds_up_across_resumes(tmp_path, monkeypatch):
    ticks = iter(range(10_000))  # every perf_counter() call one second later: the time is a count
    monkeypatch.setattr(classify.time, "perf_counter", lambda: float(next(ticks)))
    run = tmp_path / "run"
    train_classifier(**TINY, out_dir=run, stop_after=3)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["seconds"] == {"data": 3.0, "compute": 3.0, "complete": True}  # t0 -> t1 -> t2 per batch
    s = train_classifier(**TINY, out_dir=run, resume=True)
    n = s["batches"]
    assert (s["seconds_data"], s["seconds_compute"], s["time_complete"]) == (n, n, True)

    # a checkpoint from before the time was kept: what is known, marked incomplete
    train_classifier(**TINY, out_dir=tmp_path / "old", stop_after=3)
    ck = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    del ck["seconds"]
    torch.save(ck, tmp_path / "old" / "checkpoint.pt")
    s = train_classifier(**TINY, out_dir=tmp_path / "old", resume=True)
    assert (s["seconds_compute"], s["time_complete"]) == (s["batches"] - 3, False)


def test_resume_from_every_checkpoint_after_a_kill(reference, tmp_path, monkeypatch):
    """Checkpoint after every batch and keep each file; then pretend the process was killed right
    after each checkpoint, with the log already holding lines written after it (they are dropped
    and redone)."""
    run = tmp_path / "full"
    kept = {}
    save = classify._save_checkpoint

    def keep(path, payload):
        save(path, payload)
        kept[payload["lines"]] = tmp_path / f"ckpt-{payload['lines']}.pt"
        shutil.copy(path, kept[payload["lines"]])

    monkeypatch.setattr(classify, "_save_checkpoint", keep)
    train_classifier(**{**TINY, "checkpoint_every": 1}, out_dir=run)
    monkeypatch.setattr(classify, "_save_checkpoint", save)
    _assert_same_run(run, reference[0])  # checkpointing does not change the run
    # keyed by log lines: 4 = last batch of epoch 0, before its test; 5 = after the test (epoch boundary)
    assert {4, 5, 7, 10} <= kept.keys()
    boundary = torch.load(kept[5], weights_only=True)
    assert (boundary["epoch"], boundary["batch"]) == (1, 0)

    for step in (2, 5):  # (stopping mid-epoch and before an epoch's test: test above)
        again = tmp_path / f"resume-{step}"
        again.mkdir()
        shutil.copy(run / "metrics.jsonl", again / "metrics.jsonl")  # the full log: written past the checkpoint
        shutil.copy(kept[step], again / "checkpoint.pt")
        train_classifier(**TINY, out_dir=again, resume=True)
        _assert_same_run(again, reference[0])


def test_resume_in_a_new_process(reference, tmp_path):
    run = tmp_path / "run"
    train_classifier(**TINY, out_dir=run, stop_after=6)  # epoch 1, batch 1: after the first test
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "fptt_ext", "train", *TINY_ARGS, "--out", str(run), "--resume",
                           "--threads", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    _assert_same_run(run, reference[0])


def test_resume_with_other_network_is_refused(reference, tmp_path, capsys):
    run = _copy_run(reference[0], tmp_path / "run")
    config = (run / "config.json").read_text()
    assert main(["train", *TINY_ARGS, "--hidden", "32", "--out", str(run), "--resume"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "cannot resume" in line and "checkpoint.pt" in line
    assert (run / "config.json").read_text() == config  # the run is left as it was


# ------------------------------------------------------------------------- determinism
def test_same_seed_same_run_other_seed_differs(reference, tmp_path):
    train_classifier(**TINY, out_dir=tmp_path / "same")
    _assert_same_run(tmp_path / "same", reference[0])
    train_classifier(**{**TINY, "seed": 1, "epochs": 1}, out_dir=tmp_path / "other")
    a, b = _metrics(tmp_path / "other"), _metrics(reference[0])
    assert [r.get("loss") for r in a] != [r.get("loss") for r in b]
    assert not torch.equal(_weights(tmp_path / "other")["layers.0.weight"], _weights(reference[0])["layers.0.weight"])
