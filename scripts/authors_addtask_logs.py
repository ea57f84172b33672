"""Summaries of the Add-task curves that the papers' authors logged, measured as ours are.

The authors' repository (``byin-cwi/sFPTT``) keeps, in ``fptt/fptt_AddTask/text_his/``, one file
per run: a Python list of the MSE on a fresh batch in eval mode after every iteration, the
same protocol as the ``heldout_mse`` column of ``fptt-ext addtask``. This script applies
:func:`fptt_ext.experiments.addtask.stability_summary` to the SNN curves at T = 1000 over the
same iteration budget as our runs, so docs/addtask.md compares like with like, and notes where a
log turns to NaN (a run that diverged), over the whole log. It writes one
JSON per log under ``docs/results/addtask/authors/``:

    python scripts/authors_addtask_logs.py PATH/TO/sFPTT/fptt/fptt_AddTask/text_his
"""

from __future__ import annotations

import argparse
import ast
import json
import math
from pathlib import Path

from fptt_ext.experiments.addtask import MARKS, SUMMARY_WINDOW, stability_summary

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "addtask" / "authors"
# The spiking runs at T = 1000 (LTC-SN, "asrnn" = adaptive SRNN), and their one BPTT log whose name
# gives no T (snn_file_bptt); the others are LSTMs, plain RNNs or shorter sequences.
LOGS = ("snn_fptt_mem_1000_1.txt", "snn_v2_fptt_mem_1000.txt", "snn_fptt_mem_1000.txt",
        "asrnn_fptt_mem_1000.txt", "asrnn_v2_fptt_mem_1000.txt", "snn_bptt_mem_1000.txt",
        "snn_bptt_mem_1000_1.txt", "snn_bptt_mem_1000_v2.txt", "snn_bptt_mem_1000_v3.txt",
        "snn_bptt_mem_1000_v4.txt", "snn_file_bptt.txt", "asrnn_bptt_mem_1000.txt", "asrnn_v2_bptt_mem_1000.txt")


def read_log(path: Path) -> list[float]:
    """A log's list literal; a diverged run logged ``nan``, which ``literal_eval`` does not read."""
    values = ast.literal_eval(path.read_text().replace("nan", "None"))  # a list of floats, nothing else
    return [math.nan if v is None else float(v) for v in values]


def summarise(values: list[float], budget: int) -> dict:
    """As our ``summary.json``: the statistics are over the iterations before the first NaN."""
    first_nan = next((i + 1 for i, v in enumerate(values) if not math.isfinite(v)), None)
    mse = values[:budget] if first_nan is None else values[:min(budget, first_nan - 1)]
    by_mark = {str(n): sum(mse[n - SUMMARY_WINDOW:n]) / SUMMARY_WINDOW for n in MARKS if n <= len(mse)}
    return {"iterations": len(mse), "mse100_by_iteration": by_mark, "first_nan_at": first_nan,
            "final_mse": sum(mse[-SUMMARY_WINDOW:]) / SUMMARY_WINDOW, **stability_summary(mse)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text_his", type=Path, help="the authors' fptt/fptt_AddTask/text_his folder")
    ap.add_argument("--budget", type=int, default=2000, help="iterations to read from each log (ours: 2000)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        path = args.text_his / name
        if not path.is_file():
            raise SystemExit(f"{path} not found: pass the text_his folder of a checkout of byin-cwi/sFPTT")
        values = read_log(path)
        summary = {"source": f"byin-cwi/sFPTT fptt/fptt_AddTask/text_his/{name}",
                   "logged_iterations": len(values), "budget": args.budget, **summarise(values, args.budget)}
        (OUT / (Path(name).stem + ".json")).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"{name}: mean of last 100 {summary['final_mse']:.4f}, converged at {summary['converged_at']}, "
              f"largest excursion {summary['max_excursion']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
