"""The tutorial notebooks are committed without outputs (nbstripout) and open with what they teach.

The CI executes them (``pytest --nbmake notebooks/`` in ``scripts/test.sh``); this test only
checks what is stored in git. To clean a notebook you ran: ``nbstripout notebooks/*.ipynb``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run nbstripout {path}"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: widget state stored; run nbstripout"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_what_and_how_long(path):
    first = json.loads(path.read_text())["cells"][0]
    text = "".join(first["source"])
    assert first["cell_type"] == "markdown" and text.startswith("# ")
    assert "How long" in text, f"{path.name}: the first cell must say how long it takes on a laptop CPU"
