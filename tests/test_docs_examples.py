"""The Python examples of the documentation site run as written.

Every ```python block of the pages below is executed, in order, in one namespace per page
(so a block may use what an earlier block of the same page defined), from a temporary
working directory. ```py blocks are fragments shown for reading and are not run; ```bash
blocks are commands. The examples use small budgets so the whole file runs in seconds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# pages whose examples are complete programs (the older reference pages hold fragments)
PAGES = ["getting-started.md", "concepts/ltc.md", "concepts/fptt.md", "howto/snntorch.md",
         "howto/spikingjelly.md", "howto/pytorch.md", "howto/ddp.md", "howto/resume.md", "howto/zoo.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def test_every_page_is_listed():
    """A new how-to or concepts page gets its examples tested: it must be in PAGES."""
    pages = {str(p.relative_to(DOCS)) for d in ("howto", "concepts") for p in (DOCS / d).glob("*.md")}
    assert pages <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no ```python example"
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
