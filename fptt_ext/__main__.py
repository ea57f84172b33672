"""``python -m fptt_ext`` runs the ``fptt-ext`` command line (:mod:`fptt_ext.cli`)."""

from .cli import run

if __name__ == "__main__":
    run()
