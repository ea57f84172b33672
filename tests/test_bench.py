"""The benchmark commands on tiny configurations: they run, and write well-formed JSON and PNG.

Nothing here is timed: the numbers of a benchmark depend on the machine and its load.
What is asserted is the structure of the results, and the one deterministic figure: the
bytes autograd saves per FPTT update do not depend on T (for the workloads of the
benchmark, ours and SpikingJelly's).
"""

from __future__ import annotations

import json

import pytest
import torch

from fptt_ext.bench import (
    make_data,
    make_workload,
    measure_point,
    plot_memory,
    plot_speed,
    saved_bytes_per_update,
    speed_table,
)
from fptt_ext.bench.profile import profile_fptt_step
from fptt_ext.bench.workloads import METHODS, add_state_traffic
from fptt_ext.cli import main
from fptt_ext.fptt.fused import compiler_available

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"hidden": (8,), "batch_size": 2}


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def test_saved_bytes_import_path_is_kept():
    from fptt_ext.bench import saved_bytes_table  # the pre-package import path

    rows = saved_bytes_table(Ts=(2, 4), methods=("fptt",), batch_size=2, hidden=(8,))
    assert [r["T"] for r in rows] == [2, 4]


@pytest.mark.parametrize("method", ["fptt", "sj-fptt"])
def test_fptt_saved_bytes_constant_in_T(method):
    per_update = {T: measure_point(method, T, **TINY)["saved_mib_per_update"] for T in (2, 3, 5)}
    assert per_update[2] > 0
    assert per_update[2] == per_update[3] == per_update[5], per_update
    # while BPTT's single update saves bytes proportional to T
    bptt = {T: measure_point("bptt", T, **TINY)["saved_mib_per_update"] for T in (2, 4)}
    assert bptt[4] == pytest.approx(2 * bptt[2], rel=0.05)
    a, b = (saved_bytes_per_update("fptt", T, batch_size=2, hidden=(8,))["bytes_per_update"] for T in (3, 5))
    assert a == b


def test_measure_point_fields():
    r = measure_point("tbptt", 3, **TINY)
    assert r["updates"] == 3 and r["method"] == "tbptt" and r["T"] == 3
    # in this (long-lived) process the peak may predate the point; RSS counters lag < 1 MiB
    assert r["peak_mib"] >= r["baseline_mib"] - 1 and r["baseline_mib"] > 0
    assert r["training_mib"] == pytest.approx(r["peak_mib"] - r["baseline_mib"], abs=0.02)


def test_every_method_trains_the_same_start(tmp_path):
    """Same seed, same weights, same data for every method; each one changes the weights."""
    x, y = make_data("rmnist", 2, 2)
    methods = [m for m in METHODS if m != "fptt-fused" or compiler_available()]
    works = {m: make_workload(m, "rmnist", **TINY) for m in methods}
    w0 = [p.detach().clone() for p in works["fptt"].model.parameters()]
    for w in works.values():
        assert all(torch.equal(p, q) for p, q in zip(w.model.parameters(), w0))
        w.run(x, y)
        assert any(not torch.equal(p, q) for p, q in zip(w.model.parameters(), w0))
    assert works["bptt"].updates == 1 and works["sj-fptt"].updates == works["fptt"].updates == 2
    if "fptt-fused" in works:  # the compiled FPTT updates: same training to rounding
        assert works["fptt-fused"].trainer.optimizer.fused
        for p, q in zip(works["fptt-fused"].model.parameters(), works["fptt"].model.parameters()):
            # Adam divides by the gradient's own size, so where the task gradient is ~0 the
            # rounding of the regulariser's cancelling terms shows at a few % of a step (lr 1e-3);
            # in float64 the two agree to 1e-8 (tests/test_fptt_fused.py)
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-4)


def test_state_traffic_trains_as_tbptt_and_passes_over_two_parameter_copies_per_update(monkeypatch):
    """tbptt-traffic: the same training as TBPTT-1, bit for bit, plus one pass per update over two
    buffers per parameter (what W_bar and lam cost in memory traffic)."""
    x, y = make_data("rmnist", 3, 2)
    plain, traffic = make_workload("tbptt", "rmnist", **TINY), make_workload("tbptt-traffic", "rmnist", **TINY)
    passes = []
    foreach_mul = torch._foreach_mul_
    monkeypatch.setattr(torch, "_foreach_mul_", lambda ts, s: passes.append((len(ts), s)) or foreach_mul(ts, s))
    plain.run(x, y)
    traffic.run(x, y)
    n = len(list(traffic.model.parameters()))
    assert passes == [(2 * n, 1.0)] * 3  # one pass per update, T = 3 updates
    for p, q in zip(plain.model.parameters(), traffic.model.parameters()):
        assert torch.equal(p, q)
    r = speed_table(["tbptt", "tbptt-traffic", "fptt"], T=2, rounds=1, warmup=0, **TINY)
    assert {"tbptt-traffic/tbptt time per step", "fptt/tbptt-traffic time per step"} <= set(r["ratios"])


def test_state_traffic_buffers_keep_their_values():
    w = torch.nn.Parameter(torch.randn(4, 3))
    adam = torch.optim.Adam([w], lr=0.1)
    buffers = add_state_traffic(adam)
    before = [b.clone() for b in buffers]
    for _ in range(3):
        w.grad = torch.randn(4, 3)
        adam.step()
    assert len(buffers) == 2 and all(b.shape == w.shape and torch.equal(b, c) for b, c in zip(buffers, before))
    assert all(b.data_ptr() != w.data_ptr() for b in buffers)


def test_cli_addtask_compare_times_a_revision_against_this_tree(tmp_path, capsys):
    """--compare: one Add-task iteration of git revision HEAD and of this tree, in worker processes."""
    js = tmp_path / "addtask.json"
    assert main(["bench", "addtask", "--T", "4", "--batch-size", "2", "--K", "2", "--rounds", "1",
                 "--compare", "HEAD", "--compare-rounds", "2", "--json", str(js)]) == 0
    cmp = json.loads(js.read_text())["compare"]
    assert cmp["config"]["K"] == 2 and cmp["config"]["before"] == "HEAD"
    assert set(cmp["seconds_per_iteration"]) == {"addtask before", "addtask after"}
    assert all(len(v) == 2 and min(v) > 0 for v in cmp["seconds"].values())
    assert cmp["ratios"]["addtask after/before"] > 0
    assert "after / before" in capsys.readouterr().out
    assert main(["bench", "addtask", "--T", "4", "--batch-size", "2", "--K", "2", "4", "--compare", "HEAD"]) != 0
    assert "pass one --K" in capsys.readouterr().err


def test_speed_table_and_plot(tmp_path):
    r = speed_table(["fptt", "tbptt", "sj-fptt"], T=2, rounds=2, warmup=0, **TINY)
    assert set(r["methods"]) == {"fptt", "tbptt", "sj-fptt"}
    for s in r["methods"].values():
        assert len(s["seconds_per_sequence"]) == 2 and s["sample_steps_per_s"] > 0
    assert {"fptt/tbptt time per step", "fptt speedup over sj-fptt"} <= set(r["ratios"])
    plot_speed(r, tmp_path / "s.png")
    assert _is_png(tmp_path / "s.png")


@pytest.mark.skipif(not compiler_available(), reason="no C++ compiler for torch.compile's CPU backend")
def test_speed_times_compiled_methods_against_their_compiled_references():
    methods = ["fptt+compile", "tbptt", "tbptt+compile", "sj-fptt+compile"]
    r = speed_table(methods, T=2, rounds=1, warmup=1, **TINY)
    assert list(r["methods"]) == methods
    assert {"fptt+compile/tbptt time per step", "fptt+compile/tbptt+compile time per step",
            "fptt+compile speedup over sj-fptt+compile", "tbptt speedup over sj-fptt+compile"} <= set(r["ratios"])
    assert all(v > 0 for v in r["ratios"].values())


def test_speed_scnn_runs():
    r = speed_table(["fptt", "sj-fptt"], network="scnn", width=0.05, T=2, batch_size=2, rounds=1, warmup=0)
    assert r["config"]["network"] == "scnn" and r["ratios"]["fptt speedup over sj-fptt"] > 0


def test_plot_memory(tmp_path):
    rows = [measure_point(m, T, **TINY) for m in ("fptt", "bptt") for T in (2, 3)]
    plot_memory({"config": {"network": "rmnist", "batch_size": 2, "methods": ["fptt", "bptt"]}, "rows": rows},
                tmp_path / "m.png")
    assert _is_png(tmp_path / "m.png")


def test_cli_speed_writes_json_and_png(tmp_path, capsys):
    js, png = tmp_path / "out" / "speed.json", tmp_path / "out" / "speed.png"
    argv = ["bench", "speed", "--T", "2", "--hidden", "8", "--batch-size", "2", "--rounds", "1", "--warmup", "0",
            "--methods", "fptt", "tbptt", "sj-fptt", "--json", str(js), "--png", str(png)]
    assert main(argv) == 0
    result = json.loads(js.read_text())
    assert set(result) == {"config", "methods", "ratios"} and result["config"]["T"] == 2
    assert _is_png(png)
    assert "TBPTT-1" in capsys.readouterr().out


def test_cli_memory_writes_json_and_png(tmp_path):
    """One point, run as memory_table runs every point: in a fresh subprocess (~6 s of imports)."""
    js, png = tmp_path / "memory.json", tmp_path / "memory.png"
    argv = ["bench", "memory", "--T", "2", "--methods", "fptt", "--hidden", "8", "--batch-size", "2",
            "--json", str(js), "--png", str(png)]
    assert main(argv) == 0
    result = json.loads(js.read_text())
    row = result["rows"][0]
    assert {"method", "T", "peak_mib", "baseline_mib", "training_mib", "saved_mib_per_update"} <= set(row)
    assert result["config"]["methods"] == ["fptt"]
    assert _is_png(png)


def test_cli_profile_and_saved_bytes(tmp_path, capsys):
    js = tmp_path / "profile.json"
    assert main(["bench", "profile", "--steps", "2", "--hidden", "8", "--batch-size", "2", "--json", str(js)]) == 0
    result = json.loads(js.read_text())
    assert {"network forward", "network backward", "FPTT regulariser grad", "rest (loop)"} <= set(
        result["ms_per_step"])
    assert main(["bench", "saved-bytes", "--T", "2", "3", "--batch-size", "2"]) == 0
    assert "MiB saved per update" in capsys.readouterr().out


def test_profile_phases_add_up():
    r = profile_fptt_step(steps=2, **TINY)
    assert sum(r["ms_per_step"].values()) == pytest.approx(r["ms_per_step_total"])
    assert r["top_ops"] and all(o["op"].startswith("aten::") for o in r["top_ops"])


@pytest.mark.parametrize("argv, message", [
    (["bench", "speed", "--backend", "snntorch", "--methods", "sj-fptt"], "MemoryModule"),
    (["bench", "speed", "--rounds", "0"], "expected an integer >= 1"),
    (["bench", "memory", "--methods", "nope"], "invalid choice"),
    (["bench", "speed", "--warmup", "-1"], "--warmup must be >= 0"),
    (["bench"], "required"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_library_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="unknown method"):
        speed_table(["fptt", "nope"])
    with pytest.raises(ValueError, match="unknown network"):
        make_data("cifar", 2, 2)
    with pytest.raises(ValueError, match="T must be >= 1"):
        measure_point("fptt", 0)


def test_cli_cell_and_addtask_write_json(tmp_path, capsys):
    js = tmp_path / "cell.json"
    assert main(["bench", "cell", "--hidden", "8", "--batch-size", "2", "--steps", "2", "--rounds", "1",
                 "--json", str(js), "--compiled"]) == 0
    r = json.loads(js.read_text())
    compiled = {"ltc compiled", "gated cell compiled"} if compiler_available() else set()
    assert set(r["ms_per_step"]["8"]) == {"ltc fused", "ltc plain", "gated cell", "gated cell, dense gates"} | compiled
    assert r["ratios"]["8"]["ltc fused / ltc plain"] > 0
    assert ("ltc compiled / gated cell compiled" in r["ratios"]["8"]) == bool(compiled)
    js = tmp_path / "addtask.json"
    assert main(["bench", "addtask", "--T", "6", "--batch-size", "2", "--K", "2", "6", "--rounds", "1",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert sorted(r["seconds_per_iteration"]) == ["K=2", "K=6"] and r["config"]["clock"] == "process"
    compiled = {"fused, compiled"} if compiler_available() else set()
    assert set(r["seconds_per_iteration"]["K=2"]) == {"fused", "plain", "fused, full graph",
                                                      "fused, subnormals kept", "matrix products alone"} | compiled
    assert r["shortcut_ratios"]["K=2"] > 0 and r["subnormal_ratios"]["K=6"] > 0 and ("K=6" in r["compiled_ratios"]) == bool(compiled)
    assert r["fused_over_matrix_products"]["K=6"] > 0
    out = capsys.readouterr().out
    assert "fused / plain" in out and "its matrix products alone" in out


def test_cli_multistep_writes_json_and_refuses_bad_shapes(tmp_path, capsys):
    js = tmp_path / "multistep.json"
    assert main(["bench", "multistep", "--shapes", "3x2x4", "5x1x3", "--rounds", "1", "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert list(r["ms_per_window"]) == ["T=3 B=2 N=4", "T=5 B=1 N=3"]
    assert set(r["ms_per_window"]["T=3 B=2 N=4"]) == {"fast", "generic"}
    assert len(r["seconds"]["T=5 B=1 N=3"]["fast"]) == 1 and r["ratios"]["T=5 B=1 N=3"] > 0
    assert "generic / fast" in capsys.readouterr().out
    for bad in ("3x2", "3x0x4", "axbxc"):
        with pytest.raises(SystemExit, match="--shapes expects TxBxN"):
            main(["bench", "multistep", "--shapes", bad, "--rounds", "1"])


def test_cli_subnormals_times_the_product_and_counts_per_method(tmp_path, capsys):
    js = tmp_path / "subnormals.json"
    assert main(["bench", "subnormals", "--shape", "4", "8", "8", "--fraction", "0.25", "--rounds", "1",
                 "--methods", "tbptt", "fptt", "--T", "2", "--batch-size", "2", "--train-rounds", "1",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["product"]["config"]["subnormal_entries"] == 8  # a quarter of 4 x 8
    assert set(r["product"]["ms_per_product"]) == {"kept", "flushed", "no subnormals"}
    for method in ("tbptt", "fptt"):
        c = r["census"]["methods"][method]
        # per step: the input layer, two gates per LTC-SN layer and the readout's products, forward and backward
        assert c["products"] > 0 and 0 <= c["products_with_subnormal_operand"] <= c["products"]
        assert c["subnormal_outputs_per_step"] == sum(c["subnormal_outputs_by_operator"].values()) / 2
    assert "matrix products got one" in capsys.readouterr().out
    assert main(["bench", "subnormals", "--fraction", "2", "--methods"]) == 2
    with pytest.raises(ValueError, match="runs tbptt, fptt, bptt"):
        from fptt_ext.bench.subnormals import subnormal_census

        subnormal_census(("fptt-fused",))


def test_subnormal_counter_counts_outputs_and_product_operands():
    from fptt_ext.bench.subnormals import SubnormalCounter
    from fptt_ext.floatmode import flush_subnormals

    with flush_subnormals(False), SubnormalCounter() as c:
        a = torch.full((2, 3), 1e-20) * 1e-20          # 6 subnormal outputs
        torch.mm(a, torch.ones(3, 2))                  # a product with a subnormal operand
        torch.mm(torch.ones(2, 3), torch.ones(3, 2))   # and one without
    assert c.outputs["aten.mul"] == 6 and c.products == 2 and c.products_with_subnormal_operand == 1


def test_subnormal_counter_counts_values_where_they_are_made_not_their_views():
    from fptt_ext.bench.subnormals import SubnormalCounter
    from fptt_ext.floatmode import flush_subnormals

    with flush_subnormals(False), SubnormalCounter() as c:
        a = torch.full((2, 3), 1e-20)
        a.mul_(1e-20)                                  # 6 made in place
        a.t().detach()[0]                              # views of them: not counted again
        torch.empty(4)                                 # whatever the memory held: not counted
    assert dict(c.outputs) == {"aten.mul_": 6}
