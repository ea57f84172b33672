"""``fptt-ext zoo``: list the model zoo, show a card, publish a training run as a checkpoint."""

from __future__ import annotations

import argparse

from . import register_command


def _zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show", "publish"),
                   help="list the models, show one model's card, or publish a run's weights as NAME's checkpoint")
    p.add_argument("name", nargs="?", default=None, help="model name (for show/publish) or a pattern (for list)")
    p.add_argument("run", nargs="?", default=None, metavar="RUN_DIR", help="publish: the training run directory")
    p.add_argument("--notes", default=None, help="publish: a remark stored in the card")


def _zoo_run(args: argparse.Namespace) -> int:
    import json

    from ..zoo import list_models, model_card

    if args.action == "list":
        rows = [(name, card["dataset"], f"T={card['T']}", "checkpoint" if card.get("checkpoint") else "no checkpoint")
                for name, card in ((n, model_card(n)) for n in list_models(args.name or "*"))]
        if not rows:
            raise ValueError(f"no zoo model matches {args.name!r}; `fptt-ext zoo list` lists them all")
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:  # columns as wide as their longest entry, two spaces apart
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
        return 0
    if args.name is None:
        raise ValueError(f"zoo {args.action} needs a model name; see `fptt-ext zoo list`")
    if args.action == "publish":
        from ..zoo.publish import publish

        if args.run is None:
            raise ValueError("zoo publish needs NAME and RUN_DIR (a directory written by `fptt-ext train`)")
        card = publish(args.name, args.run, notes=args.notes)
        score = {k: card[k] for k in ("test_accuracy", "test_mse", "map50") if card.get(k) is not None}
        print(f"published {card['checkpoint']} (sha256 {card['sha256'][:12]}...), {score} on {card['test_n']}")
        return 0
    print(json.dumps(model_card(args.name), indent=2))
    return 0


register_command("zoo", "list the model zoo, show a model card, publish a checkpoint", _zoo_arguments, _zoo_run)
