"""The Python examples of README.md and of every documentation page run as written.

Every ```python block of a page is executed, in order, in one namespace per page (so a
block may use what an earlier block of the same page defined), from a temporary working
directory. A ```py block is an excerpt of a file that runs elsewhere (an example script):
its lines must be that file's, the last file the page names before the block. ```bash blocks
are commands. The examples use small budgets, so a page runs in seconds (the zoo pages
re-evaluate a checkpoint on its full test set, as they say).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXCERPT = re.compile(r"^```py\n(.*?)^```", re.DOTALL | re.MULTILINE)
ALL_PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


PAGES = [page for page in ALL_PAGES if python_blocks(ROOT / page)]


def test_pages_with_examples_are_found():
    """Every page is searched; these are known to hold examples (a broken glob would find none)."""
    assert {"README.md", "docs/fptt.md", "docs/zoo.md", "docs/spyv4.md", "docs/getting-started.md",
            "docs/howto/zoo.md", "docs/concepts/ltc.md"} <= set(PAGES)


def _code_lines(text: str) -> list[str]:
    """Lines of code without comments and indentation (an excerpt may drop or shorten comments)."""
    lines = (line.split("  #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("page", [p for p in ALL_PAGES if EXCERPT.search((ROOT / p).read_text())])
def test_excerpts_are_taken_from_the_file_they_show(page):
    text = (ROOT / page).read_text()
    for match in EXCERPT.finditer(text):
        named = [m for m in re.findall(r"`([\w./-]+\.py)`", text[:match.start()]) if (ROOT / m).is_file()]
        assert named, f"{page}: a ```py excerpt must follow the name of the file it comes from"
        source, excerpt = _code_lines((ROOT / named[-1]).read_text()), _code_lines(match.group(1))
        missing = [line for line in excerpt if line not in source]
        assert not missing, f"{page}: lines of the excerpt not in {named[-1]}: {missing}"
        positions = [source.index(line) for line in excerpt]
        assert positions == sorted(positions), f"{page}: the excerpt's lines are not in {named[-1]}'s order"


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(ROOT / page)
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    rng = torch.get_rng_state()
    namespace = {"__name__": f"docs_{Path(page).stem}"}
    try:
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{page}[python block {i + 1}]", "exec"), namespace)  # noqa: S102 - running the docs is the test
            except Exception as err:
                raise AssertionError(f"{page}, python block {i + 1} failed: {err!r}\n{code}") from err
    finally:
        torch.set_rng_state(rng)
        sys.modules.pop(namespace["__name__"], None)


def test_docs_griffe_extension():
    """The docs' griffe extension (mkdocs.yml) turns doctests into code fences, reST math and
    roles into Markdown; its own doctests check each rewrite."""
    import doctest

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import griffe_doctests
    finally:
        sys.path.pop(0)
    result = doctest.testmod(griffe_doctests)
    assert result.failed == 0 and result.attempted >= 3
    text = "Example:\n    >>> x = [1][0]\n    >>> x\n    1\n\nText."
    assert griffe_doctests.fence_doctests(text).splitlines() == [
        "Example:", "    ```pycon", "    >>> x = [1][0]", "    >>> x", "    1", "    ```", "", "Text."]
