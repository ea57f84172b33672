"""Add-task: data generator, models, experiment runner (resume, divergence), CLI, plot."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fptt_ext.cli import main
from fptt_ext.data import AddTask, add_task_batch
from fptt_ext.experiments.addtask import HELDOUT_OFFSET, plot_addtask, read_log, run_addtask, stability_summary
from fptt_ext.fptt.loop import SequenceTrainer
from fptt_ext.fptt.losses import RegressionEndLoss
from fptt_ext.fptt.state import StatefulModules
from fptt_ext.zoo.srnn import AddTaskLSTM, AddTaskSNN, addtask_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"batch_size": 4, "hidden": 16, "progress": False}



# ------------------------------------------------------------------------------ data
@pytest.mark.parametrize("T", [2, 3, 51, 200])
def test_generator_statistics(T):
    x, y = add_task_batch(512, T, generator=torch.Generator().manual_seed(0))
    assert x.shape == (T, 512, 2) and y.shape == (512,) and x.dtype == y.dtype == torch.float32
    values, marker = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(marker.unique().tolist()) <= {0.0, 1.0}
    half = T // 2
    assert (marker.sum(0) == 2).all()
    assert (marker[:half].sum(0) == 1).all() and (marker[half:].sum(0) == 1).all()
    torch.testing.assert_close(y, (values * marker).sum(0), rtol=0, atol=1e-6)
    if T >= 51:  # markers spread over each half, y ~ sum of two U[0,1]
        first, second = marker[:half].argmax(0), marker[half:].argmax(0) + half
        assert first.min() == 0 and first.max() == half - 1
        assert second.min() == half and second.max() == T - 1
        assert abs(y.mean().item() - 1.0) < 0.08 and abs(y.var().item() - 1 / 6) < 0.04


def test_generator_determinism():
    a, b = AddTask(T=30, batch_size=8, seed=3), AddTask(T=30, batch_size=8, seed=3)
    for i in (0, 7):
        assert all(torch.equal(u, v) for u, v in zip(a.batch(i), b.batch(i)))
    assert not torch.equal(a.batch(7)[0], a.batch(8)[0])
    assert not torch.equal(a.batch(0)[0], AddTask(30, 8, seed=4).batch(0)[0])
    assert not torch.equal(AddTask(30, 8, seed=0).batch(1)[0], AddTask(30, 8, seed=1).batch(0)[0])
    stream = list(AddTask(30, 8, seed=3, start=5, num_batches=3))
    assert len(stream) == 3 and all(torch.equal(x, a.batch(5 + i)[0]) for i, (x, _) in enumerate(stream))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(add_task_batch(4, 10, g1)[0], add_task_batch(4, 10, g2)[0])


@pytest.mark.parametrize("T", [1, 0, -5])
def test_generator_rejects_short_sequences(T):
    with pytest.raises(ValueError, match="T >= 2"):
        add_task_batch(4, T)
    with pytest.raises(ValueError, match="T >= 2"):
        AddTask(T, 4)
    with pytest.raises(ValueError, match="batch_size"):
        add_task_batch(0, 10)


# ------------------------------------------------------------------------------ models
def test_models():
    net, explicit = addtask_model("ltc", hidden=16)
    assert isinstance(net, AddTaskSNN) and not explicit and net(torch.rand(3, 2)).shape == (3, 1)
    net, explicit = addtask_model("alif", hidden=16)
    assert type(net.rnn.neuron).__name__ == "ALIF" and not explicit
    net, explicit = addtask_model("lstm", hidden=16)
    assert isinstance(net, AddTaskLSTM) and explicit
    out, (h, c) = net(torch.rand(3, 2), None)
    assert out.shape == (3, 1) and h.shape == c.shape == (3, 16)
    assert sum(p.numel() for p in addtask_model("ltc")[0].parameters()) > 128 * 128  # 128 recurrent units
    with pytest.raises(ValueError, match="unknown Add-task model"):
        addtask_model("gru")


def test_plif_baseline_reads_its_membrane():
    net, explicit = addtask_model("plif", hidden=16)
    node = net.rnn.neuron.neuron  # SpikingJelly's ParametricLIFNode inside LastSpike
    assert type(node).__name__ == "ParametricLIFNode" and node.v_threshold == 0.5 and not explicit
    out = net(4 * torch.rand(3, 2))
    # readout="mem": the prediction is Linear(hidden, 1) of the node's membrane v
    torch.testing.assert_close(out, net.readout(node.v))
    assert node.v.abs().sum() > 0
    StatefulModules(net).reset()
    assert float(torch.as_tensor(node.v).abs().sum()) == 0 and float(torch.as_tensor(net.rnn.neuron.spk).sum()) == 0
    with pytest.raises(ValueError, match="no adaptation"):
        addtask_model("plif", hidden=4, beta_a=1.8)


@pytest.mark.parametrize("method", ["fptt", "bptt"])
@pytest.mark.parametrize("model", ["ltc", "alif", "plif", "lstm"])
def test_models_train(tmp_path, model, method):
    s = run_addtask(T=20, method=method, model=model, iterations=3, out_dir=tmp_path, **SMALL)
    rows = read_log(tmp_path)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["train_mse"]) and math.isfinite(r["heldout_mse"])
               and r["time"] > 0 for r in rows)
    label = {"fptt": "FPTT-K10", "bptt": "BPTT"}[method] + f"-{model.upper()}"
    assert s["iterations"] == 3 and not s["diverged"] and s["label"] == label
    assert s["final_mse"] == pytest.approx(sum(r["heldout_mse"] for r in rows) / 3)
    assert s["final_train_mse"] == pytest.approx(sum(r["train_mse"] for r in rows) / 3)
    assert json.loads((tmp_path / "summary.json").read_text()) == s


def test_tbptt_and_fptt_k(tmp_path):
    s = run_addtask(T=12, method="tbptt", k=1, iterations=2, out_dir=tmp_path / "a", **SMALL)
    assert s["label"] == "TBPTT-1-LTC"
    s = run_addtask(T=12, method="fptt", K=3, iterations=2, out_dir=tmp_path / "b", **SMALL)
    assert s["label"] == "FPTT-K3-LTC"


def test_logged_mses_are_what_they_say(tmp_path):
    s = run_addtask(T=20, K=4, iterations=2, out_dir=tmp_path, **SMALL)
    assert s["config"]["K"] == 4 and s["config"]["max_grad_norm"] == 1.0 and s["config"]["readout"] == "mem"
    # the authors' Add-task neuron by default: a constant threshold of 0.5, no adaptation
    assert (s["config"]["threshold"], s["config"]["beta_a"], s["config"]["detach_adaptation"]) == (0.5, 0.0, False)
    # Recompute both iterations by hand: same seed -> same init and batches; the authors' recipe:
    # 4 windows, clipping at 1, loss weight p + 1/K per window, readout on the membrane.
    torch.manual_seed(0)
    net, _ = addtask_model("ltc", hidden=16, threshold=0.5, beta_a=0.0)
    trainer = SequenceTrainer(net, torch.optim.Adam(net.parameters(), 3e-3), K=4, max_grad_norm=1.0,
                              loss=RegressionEndLoss(20, "window", K=4))
    for i, row in enumerate(read_log(tmp_path)):
        x, y = AddTask(20, 4, seed=0).batch(i)
        result = trainer.train_batch(x, y)
        assert row["loss"] == result.loss and result.updates == 4
        # train_mse: the training batch's own final-step prediction
        assert row["train_mse"] == torch.nn.functional.mse_loss(result.outputs[-1, :, 0], y).item()
        # heldout_mse: a batch never trained on, after the iteration's updates, no update
        xh, yh = AddTask(20, 4, seed=0).batch(HELDOUT_OFFSET + i)
        before = [p.detach().clone() for p in net.parameters()]
        assert row["heldout_mse"] == torch.nn.functional.mse_loss(trainer.predict(xh)[-1, :, 0], yh).item()
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_detach_adaptation_default_follows_the_threshold(tmp_path):
    fixed = run_addtask(T=6, iterations=1, out_dir=tmp_path / "a", **SMALL)  # ltc: no adaptation
    lstm = run_addtask(T=6, iterations=1, model="lstm", out_dir=tmp_path / "b", **SMALL)
    off = run_addtask(T=6, iterations=1, threshold=0.1, beta_a=1.8, detach_adaptation=False, out_dir=tmp_path / "c",
                      **SMALL)
    adapting = run_addtask(T=6, iterations=1, model="alif", out_dir=tmp_path / "d", **SMALL)  # 0.1 / 1.8
    assert [r["config"]["detach_adaptation"] for r in (fixed, lstm, off, adapting)] == [False, False, False, True]
    assert fixed["config"]["model_kwargs"]["detach_adaptation"] is False and lstm["config"]["model_kwargs"] is None
    assert (adapting["config"]["threshold"], adapting["config"]["beta_a"]) == (0.1, 1.8)


def test_membrane_readout_reads_the_membrane():
    torch.manual_seed(0)
    net = AddTaskSNN("ltc", hidden=8)
    out = net(torch.rand(3, 2))
    torch.testing.assert_close(out, net.readout(net.rnn.neuron.mem))
    spk_net = AddTaskSNN("ltc", hidden=8, readout="spk")
    out = spk_net(torch.rand(3, 2))
    torch.testing.assert_close(out, spk_net.readout(spk_net.rnn.neuron.spk))
    with pytest.raises(ValueError, match="readout must be one of"):
        AddTaskSNN(readout="rate")


def test_authors_addtask_neuron_has_a_fixed_threshold():
    torch.manual_seed(0)
    net = AddTaskSNN("ltc", hidden=8, threshold=0.5, beta_a=0.0)
    neuron = net.rnn.neuron
    for _ in range(5):
        net(torch.rand(4, 2) * 30)
    assert neuron.b.abs().sum() > 0  # the adaptation variable moves ...
    # ... but with beta_a = 0 the threshold stays b0: a neuron fires exactly when u >= 0.5
    cur = torch.linspace(0.0, 1.5, 32).view(4, 8)
    u_prev = neuron.mem.detach().clone()
    with torch.no_grad():
        spk = neuron(cur)
        u = u_prev + torch.sigmoid(neuron.gate_m(cur, u_prev)) * (cur - u_prev)
    torch.testing.assert_close(spk, (u >= 0.5).float())
    assert 0 < spk.sum() < spk.numel()


def test_ltc_fptt_learns(tmp_path):
    # Always predicting the mean (1) gives MSE 1/6; getting well below it needs the
    # network to find and add the two marked values.
    run_addtask(T=10, method="fptt", model="ltc", iterations=150, batch_size=32, hidden=32, lr=1e-2, seed=0,
                out_dir=tmp_path, progress=False)
    mse = [r["heldout_mse"] for r in read_log(tmp_path)]
    first, last = sum(mse[:20]) / 20, sum(mse[-20:]) / 20
    assert last < 0.12 < 1 / 6, (first, last)
    assert last < 0.6 * first, (first, last)


# ------------------------------------------------------------------------------ checkpoints
def _load(path):
    return torch.load(path, weights_only=True)


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same(u, v)
    else:
        assert a == b


@pytest.mark.parametrize("method,model", [("fptt", "ltc"), ("bptt", "lstm")])
def test_resume_equals_uninterrupted(tmp_path, method, model):
    # a learning-rate milestone after the checkpoint: the resumed run must restore the scheduler too
    kw = dict(T=10, method=method, model=model, checkpoint_every=3, lr_milestones=(4,), lr_gamma=0.5, **SMALL)
    run_addtask(iterations=6, out_dir=tmp_path / "straight", **kw)
    run_addtask(iterations=3, out_dir=tmp_path / "first", **kw)
    shutil.copytree(tmp_path / "first", tmp_path / "resumed")
    with open(tmp_path / "resumed" / "log.csv", "a") as f:  # logged, then killed before the next checkpoint
        f.write("4,9.0,9.0,9.0,0.1,0.1\n")
    run_addtask(iterations=6, out_dir=tmp_path / "resumed", resume=True, **kw)

    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert [(r["iteration"], r["loss"], r["train_mse"], r["heldout_mse"]) for r in straight] == \
           [(r["iteration"], r["loss"], r["train_mse"], r["heldout_mse"]) for r in resumed]
    a, b = _load(tmp_path / "straight" / "checkpoint.pt"), _load(tmp_path / "resumed" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 6
    _assert_same(a["model"], b["model"])
    _assert_same(a["trainer"], b["trainer"])
    lr = a["trainer"]["optimizer"].get("optimizer", a["trainer"]["optimizer"])["param_groups"][0]["lr"]
    assert lr == pytest.approx(3e-3 * 0.5)
    s1 = json.loads((tmp_path / "straight" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert s1["final_mse"] == s2["final_mse"] and s2["iterations"] == 6
    assert not list((tmp_path / "resumed").glob("*.tmp"))


def test_resume_may_add_milestones_ahead(tmp_path):
    kw = dict(T=10, checkpoint_every=2, **SMALL)
    run_addtask(iterations=5, lr_milestones=(3,), lr_gamma=0.5, out_dir=tmp_path / "straight", **kw)
    run_addtask(iterations=2, out_dir=tmp_path / "later", **kw)  # no milestone yet
    run_addtask(iterations=5, lr_milestones=(3,), lr_gamma=0.5, out_dir=tmp_path / "later", resume=True, **kw)
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "later")
    assert [(r["loss"], r["heldout_mse"]) for r in a] == [(r["loss"], r["heldout_mse"]) for r in b]
    # a milestone already passed cannot be changed
    with pytest.raises(ValueError, match="lr_milestones"):
        run_addtask(iterations=6, lr_milestones=(2,), lr_gamma=0.5, out_dir=tmp_path / "later", resume=True, **kw)


def test_resume_rejects_other_settings(tmp_path):
    run_addtask(T=10, iterations=1, out_dir=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="T=10"):
        run_addtask(T=12, iterations=2, out_dir=tmp_path, resume=True, **SMALL)
    with pytest.warns(RuntimeWarning, match="starting from scratch"):
        run_addtask(T=10, iterations=1, out_dir=tmp_path / "new", resume=True, **SMALL)


def test_divergence_is_recorded(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = SequenceTrainer.train_batch

    def flaky(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FloatingPointError("non-finite loss at step 7")
        return original(self, x, y)

    monkeypatch.setattr(SequenceTrainer, "train_batch", flaky)
    s = run_addtask(T=10, method="bptt", iterations=10, out_dir=tmp_path, **SMALL)
    rows = read_log(tmp_path)
    assert s["diverged"] is True and s["diverged_at"] == 3 and s["iterations"] == 3 == len(rows)
    assert math.isnan(rows[-1]["heldout_mse"]) and math.isnan(rows[-1]["loss"])
    assert s["final_mse"] == pytest.approx((rows[0]["heldout_mse"] + rows[1]["heldout_mse"]) / 2)
    assert json.loads((tmp_path / "summary.json").read_text())["diverged_at"] == 3  # strict JSON
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert _load(tmp_path / "checkpoint.pt")["diverged_at"] == 3
    # Resuming a diverged run does not train further.
    assert run_addtask(T=10, method="bptt", iterations=10, out_dir=tmp_path, resume=True, **SMALL)["iterations"] == 3
    assert calls["n"] == 3


# ------------------------------------------------------------------------------ CLI and plot
@pytest.mark.parametrize("argv,message", [
    (["addtask", "--T", "1"], "argument --T: expected an integer >= 2, got 1"),
    (["addtask", "--model", "gru"], "invalid choice: 'gru'"),
    (["addtask", "--T", "10", "--K", "20"], "1 <= K <= T"),
    (["addtask", "--iterations", "0"], ">= 1"),
    (["addtask-plot", "/nonexistent/run", "--out", "x.png"], "no Add-task log"),
])
def test_cli_bad_input(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_m_fptt_ext_bad_input():
    proc = subprocess.run([sys.executable, "-m", "fptt_ext", "addtask", "--T", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "--T: expected an integer >= 2" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_runs_and_plots(tmp_path, capsys):
    runs = []
    for method, model in [("fptt", "ltc"), ("bptt", "lstm")]:
        out = tmp_path / f"{method}-{model}"
        assert main(["addtask", "--T", "8", "--method", method, "--model", model, "--iterations", "2",
                     "--batch-size", "4", "--hidden", "8", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
        runs.append(str(out))
        with open(out / "log.csv") as f:
            assert next(iter(csv.reader(f))) == ["iteration", "loss", "train_mse", "heldout_mse", "time", "elapsed"]
    assert "FPTT-LTC T=8: finished after 2 iterations; held-out MSE" in capsys.readouterr().out
    png = tmp_path / "plots" / "addtask.png"
    assert main(["addtask-plot", *runs, "--out", str(png), "--smooth", "2"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_addtask(runs[0], tmp_path / "one.png").stat().st_size > 1000


def test_stability_summary():
    # 100 values at 0.2, then 150 at 0.004 with one excursion to 0.05 (12.5x the running mean)
    mse = [0.2] * 100 + [0.004] * 150
    mse[240] = 0.05
    st = stability_summary(mse)
    assert st["converged_at"] is not None and st["converged_at"] > 100
    assert st["best_mse100"] == pytest.approx(0.004) and st["max_excursion"] == pytest.approx(0.05 / 0.004)
    assert stability_summary([0.2] * 150)["converged_at"] is None and stability_summary([0.1] * 50)["best_mse100"] is None
