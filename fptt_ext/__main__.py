"""``python -m fptt_ext`` runs the ``fptt-ext`` command line (:mod:`fptt_ext.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
