"""The result tables of the docs, rendered from the summaries that the training commands wrote.

Every measured figure in docs/results.md, docs/addtask.md and docs/recipes.md sits between
``<!-- table: NAME -->`` and ``<!-- end table -->`` and is rendered here from the JSON
summaries under ``docs/results/`` (``summary.json`` files of ``fptt-ext addtask`` and
``fptt-ext train`` runs, copied as they were written). ``tests/test_docs_numbers.py`` checks
that the docs hold exactly what this renders, so a number cannot drift from its file.

    python scripts/docs_tables.py           # rewrite the tables in place
    python scripts/docs_tables.py --check   # exit 1 if a table differs from its files
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOCS = ("docs/results.md", "docs/addtask.md", "docs/recipes.md", "docs/zoo.md", "docs/snntorch-tutorials.md",
        "docs/spyv4.md")
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.DOTALL)


def load(rel: str) -> dict:
    """A summary under docs/results/ (``rel`` relative to it)."""
    return json.loads((RESULTS / rel).read_text())


def _f(x, digits=4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _neuron(cfg: dict) -> str:
    if cfg["model"] == "lstm":
        return "LSTM"
    name = {"ltc": "LTC-SN", "ltc-minus": "LTC-SN, constant adaptation decay", "alif": "ALIF",
            "plif": "SpikingJelly PLIF"}[cfg["model"]]
    if cfg.get("beta_a") == 0:
        return f"{name}, threshold {cfg['threshold']:g}, no adaptation"
    detach = ", detach_adaptation" if cfg.get("detach_adaptation") else ", exact adaptation gradient"
    return f"{name}, b0 {cfg['threshold']:g}, beta_a {cfg['beta_a']:g}{detach}"


def _method(cfg: dict) -> str:
    if cfg["method"] == "fptt":
        sched = f", lr x{cfg['lr_gamma']:g} at {', '.join(map(str, cfg['lr_milestones']))}" \
            if cfg.get("lr_milestones") else ""
        weight = ", loss (t/T) MSE" if cfg.get("loss_weighting") == "time" else ""
        return f"FPTT, K = {cfg['K']}, alpha {cfg['alpha']:g}{weight}{sched}"
    if cfg["method"] == "tbptt":
        return f"TBPTT-{cfg['k']}"
    return "BPTT"


def addtask_table(files: list[str]) -> str:
    rows = [("| run (file) | network | method | iterations | held-out MSE, mean of iterations 101-200 / "
            "901-1000 | best mean of 100 (ending at) | mean of the last 100 | first mean of 100 <= 0.01 at | "
            "largest excursion after it | diverged | s / iteration |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rel in files:
        s = load(rel)
        cfg = s["config"]
        marks = s.get("mse100_by_iteration", {})
        exc = "n/a" if s.get("max_excursion") is None else f"{s['max_excursion']:.1f}x the running mean"
        rows.append(
            f"| [{Path(rel).stem}](results/{rel}) | {_neuron(cfg)} | {_method(cfg)} | {s['iterations']} | "
            f"{_f(marks.get('200'))} / {_f(marks.get('1000'))} | "
            f"{_f(s.get('best_mse100'))} ({s.get('best_mse100_at') or 'n/a'}) | {_f(s['final_mse'])} | "
            f"{s.get('converged_at') or 'not reached'} | {exc} | "
            f"{'at ' + str(s['diverged_at']) if s['diverged'] else 'no'} | {_f(s['seconds_per_iteration'], 2)} |")
    return "\n".join(rows) + "\n"


def classify_table(files: list[str], link_prefix: str = "results/") -> str:
    rows = [("| run (file) | neuron | method | recipe | test accuracy after each epoch (%) | test images | "
            "training time |"),
            "|---|---|---|---|---|---|---|"]
    for rel in files:
        s = load(rel)
        method = "BPTT" if s["method"] == "bptt" else (
            f"TBPTT-{s['k']}" if s["method"] == "tbptt" else f"FPTT, K = {s['K'] or s['T']}")
        recipe = (f"{s['optimizer']} lr {s['lr']:g}, {s.get('lr_schedule', 'constant')}, batch {s['batch_size']}, "
                  f"clip {s.get('clip')}")
        if s["method"] == "fptt":
            recipe += f", divergence {s.get('divergence', 'running')}"
            if s.get("wbar_at_epoch_end"):
                recipe += ", W <- W_bar at epoch end"
        accs = " / ".join(f"{a:.2f}" for a in s["test_acc_per_epoch"])
        minutes = (s["seconds_data"] + s["seconds_compute"]) / 60
        # a run resumed from a checkpoint that did not keep its time knows only the part after it
        time = f"{minutes:.1f} min" if s.get("time_complete", True) else "not recorded in full (resumed)"
        neuron = {"ltc": "LTC-SN", "ltc-minus": "LTC-SN, constant adaptation decay", "alif": "ALIF",
                  "leaky": "snnTorch Leaky", "plif": "SpikingJelly PLIF"}.get(s.get("neuron"), s.get("neuron"))
        rows.append(f"| [{Path(rel).stem}]({link_prefix}{rel}) | {neuron} | {method} | {recipe} | {accs} | "
                    f"{s['test_n']} | {time} |")
    return "\n".join(rows) + "\n"


def authors_table(files: list[str]) -> str:
    """The authors' own logged curves (scripts/authors_addtask_logs.py), measured as ours are."""
    rows = [("| their log (summary file) | held-out MSE, mean of iterations 901-1000 / 1901-2000 | "
             "best mean of 100 (ending at) | first mean of 100 <= 0.01 at | largest excursion after it | "
             "NaN from iteration (iterations logged) |"),
            "|---|---|---|---|---|---|"]
    for rel in files:
        s = load(rel)
        marks = s["mse100_by_iteration"]
        exc = "n/a" if s["max_excursion"] is None else f"{s['max_excursion']:.1f}x the running mean"
        nan = s["first_nan_at"] or "none"
        rows.append(f"| `{s['source'].rsplit('/', 1)[1]}` ([summary](results/{rel})) | "
                    f"{_f(marks.get('1000'))} / {_f(marks.get('2000'))} | "
                    f"{_f(s['best_mse100'])} ({s['best_mse100_at']}) | {s['converged_at'] or 'not reached'} | {exc} | "
                    f"{nan} ({s['logged_iterations']}) |")
    return "\n".join(rows) + "\n"


def noise_table(files: list[str]) -> str:
    """Held-out batch MSE of a fixed checkpoint over its mean (scripts/addtask_heldout_noise.py)."""
    rows = [("| checkpoint (file) | batches of | batches | mean MSE | batch MSE / mean: median, 99th, 99.9th "
             "percentile | largest |"), "|---|---|---|---|---|---|"]
    for rel in files:
        s = load(rel)
        q = s["ratio_to_mean_quantiles"]
        rows.append(f"| `{s['checkpoint']}` ([file](results/{rel})) | {s['batch_size']} | {s['batches']} | "
                    f"{_f(s['mean_mse'])} | {q['50']:.2f}, {q['99']:.2f}, {q['99.9']:.2f} | {s['max_ratio']:.2f} |")
    return "\n".join(rows) + "\n"


def detect_table(files: list[str]) -> str:
    """``fptt-ext train-detector`` summaries: neuron, recipe, training done, test mAP@0.5 at every
    evaluation during training (from the summary, or the run's committed ``NAME.evaluations.jsonl``)
    and after each read of the final model."""
    rows = [("| run (file) | neuron | optimizer | lr schedule | training images, mosaic epochs | epochs (batches) | "
             "mAP@0.5 during training, (epoch) % | final mAP@0.5 after read 1 / 2 / 3 / 4 (%) | test images | "
             "training time |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for rel in files:
        s = load(rel)
        evals = s.get("evaluations")
        side = RESULTS / Path(rel).with_suffix(".evaluations.jsonl")
        if evals is None and side.exists():
            evals = [json.loads(line) for line in side.read_text().splitlines() if line.strip()]
        during = ", ".join(f"({e['epoch']}) {100 * e['map50']:.2f}" for e in evals or []) or "-"
        reads = " / ".join(f"{100 * m:.2f}" for m in s["map50_per_read"])
        stopped = ", time limit" if s["stopped_by_time_limit"] else ""
        neuron = {"ltc": "LTC-SN", "plif": "SpikingJelly PLIF"}.get(s["model_kwargs"]["neuron"],
                                                                    s["model_kwargs"]["neuron"])
        rows.append(f"| [{Path(rel).stem}](results/{rel}) | {neuron} | {s['optimizer']} lr {s['lr']:g} | "
                    f"{s.get('lr_schedule', 'constant')} | {s['n_train']:,}, {s['mosaic_epochs']} | "
                    f"{s['epochs_done']} of {s['epochs']} ({s['batches']}{stopped}) | {during} | {reads} | "
                    f"{s['test_n']} | {s['train_seconds'] / 60:.1f} min |")
    return "\n".join(rows) + "\n"


def zoo_table() -> str:
    rows = ["| checkpoint (card) | trained with | test score (`fptt-ext eval NAME`) |", "|---|---|---|"]
    for card_path in sorted((ROOT / "zoo").glob("*.json")):
        card = json.loads(card_path.read_text())
        name = card_path.stem
        if "test_accuracy" in card:
            score = f"**{card['test_accuracy']:.2f}%** on {card['test_n']:,} test images"
        elif "map50" in card:
            score = f"mAP@0.5 **{card['map50']:.2f}%** on {card['test_n']:,} test images"
        else:
            score = f"held-out MSE **{card['test_mse']:.4f}** on {card['test_n']:,} fresh sequences"
        rows.append(f"| `{name}` (`zoo/{card_path.name}`) | `{card['train_command']}` | {score} |")
    return "\n".join(rows) + "\n"


def _bench_tutorials():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_tutorials", ROOT / "scripts" / "bench_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tables() -> dict[str, str]:
    """Every table by name; each lists the files it is made of."""
    out = {"zoo-checkpoints": zoo_table()}
    at = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "addtask").glob("*.json"))
    if at:
        out["addtask-T1000"] = addtask_table([f for f in at if load(f)["config"]["T"] == 1000])
        t200 = [f for f in at if load(f)["config"]["T"] == 200]
        if t200:
            out["addtask-T200-alpha"] = addtask_table(t200)
    authors = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "addtask" / "authors").glob("*.json"))
    if authors:
        out["addtask-authors-logs"] = authors_table(authors)
    noise = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "addtask" / "noise").glob("*.json"))
    if noise:
        out["addtask-heldout-noise"] = noise_table(noise)
    bench = _bench_tutorials()
    if bench.load_results():  # docs/results/snntorch/*.json, written and rendered by scripts/bench_tutorials.py
        out["snntorch-tutorials"] = bench.render_table(bench.load_results())
    det = sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "detect").glob("*.json"))
    if det:
        out["detect-synthetic"] = detect_table(det)
    cls = RESULTS / "classify"
    for group in sorted(p.name for p in cls.iterdir() if p.is_dir()) if cls.is_dir() else []:
        files = sorted(p.relative_to(RESULTS).as_posix() for p in (cls / group).glob("*.json"))
        out[f"classify-{group}"] = classify_table(files)
    return out


def render(text: str, rendered: dict[str, str]) -> str:
    def sub(m):
        name = m.group("name")
        if name not in rendered:
            raise KeyError(f"no table named {name!r} (tables: {sorted(rendered)})")
        return m.group(1) + rendered[name] + m.group(4)

    return BLOCK.sub(sub, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    rendered, stale = tables(), []
    for rel in DOCS:
        path = ROOT / rel
        if not path.is_file():
            continue
        text = path.read_text()
        new = render(text, rendered)
        if new != text:
            stale.append(rel)
            if not check:
                path.write_text(new)
    if check and stale:
        print("tables differ from docs/results/: " + ", ".join(stale) + " (run python scripts/docs_tables.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
