"""``fptt-ext zoo``: list the model zoo, show a card."""

from __future__ import annotations

import argparse

from . import register_command


def _zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show"), help="list the models, or show one model's card")
    p.add_argument("name", nargs="?", default=None, help="model name (for show) or a pattern (for list)")


def _zoo_run(args: argparse.Namespace) -> int:
    import json

    from ..zoo import list_models, model_card

    if args.action == "list":
        for name in list_models(args.name or "*"):
            card = model_card(name)
            weights = "checkpoint" if card.get("checkpoint") else "no checkpoint"
            print(f"{name:16} {card['dataset']:14} T={card['T']!s:5} {weights}")
        return 0
    if args.name is None:
        raise ValueError("zoo show needs a model name; see `fptt-ext zoo list`")
    print(json.dumps(model_card(args.name), indent=2))
    return 0


register_command("zoo", "list the model zoo or show a model card", _zoo_arguments, _zoo_run)
