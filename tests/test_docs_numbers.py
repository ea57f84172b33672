"""The measured figures in the docs equal the summaries their commands wrote.

Every result table in docs/ is rendered by ``scripts/docs_tables.py`` from the ``summary.json``
files copied under ``docs/results/``; here the docs must hold exactly that rendering, and every
summary must appear in some table.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
docs_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs_tables)


def _blocks():
    for rel in docs_tables.DOCS:
        text = (ROOT / rel).read_text()
        for m in docs_tables.BLOCK.finditer(text):
            yield rel, m.group("name"), m.group("body")


def test_every_table_is_rendered_from_its_files():
    rendered = docs_tables.tables()
    blocks = list(_blocks())
    assert blocks, "no result tables found in the docs"
    for rel, name, body in blocks:
        assert name in rendered, f"{rel}: table {name!r} has no summaries under docs/results/"
        assert body == rendered[name], f"{rel}: table {name!r} differs from its files; run scripts/docs_tables.py"


def test_every_summary_is_shown_and_every_link_resolves():
    shown = "".join(body for _, _, body in _blocks())
    files = sorted((ROOT / "docs" / "results").rglob("*.json"))
    assert files
    for f in files:
        rel = f.relative_to(ROOT / "docs").as_posix()
        assert f"]({rel})" in shown, f"{rel} is in no table"
        json.loads(f.read_text())  # strict JSON
    for link in re.findall(r"\]\((results/[^)]+)\)", shown):
        assert (ROOT / "docs" / link).is_file(), link


@pytest.mark.parametrize("value,text", [(0.0123456, "0.0123"), (None, "n/a")])
def test_number_format(value, text):
    assert docs_tables._f(value) == text
