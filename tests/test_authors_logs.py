"""``scripts/authors_addtask_logs.py`` reads the authors' Add-task logs, diverged ones included."""

import importlib.util
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("authors_logs", ROOT / "scripts" / "authors_addtask_logs.py")
authors_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(authors_logs)


def test_a_log_that_turns_to_nan_is_summarised_before_it(tmp_path):
    log = tmp_path / "run.txt"
    log.write_text(str([0.2] * 100 + [0.005] * 120)[:-1] + ", nan, nan]")  # as their logs print it
    values = authors_logs.read_log(log)
    assert len(values) == 222 and math.isnan(values[-1]) and values[0] == 0.2
    s = authors_logs.summarise(values, budget=2000)
    assert s["first_nan_at"] == 221 and s["iterations"] == 220  # the statistics stop before the NaN
    assert s["converged_at"] == 198 and math.isclose(s["final_mse"], 0.005)  # 2 of 100 at 0.2: mean 0.0089
    assert authors_logs.summarise(values, budget=150)["iterations"] == 150  # the budget cuts first
    assert authors_logs.summarise(values[:220], budget=2000)["first_nan_at"] is None
