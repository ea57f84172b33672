"""A griffe extension for the documentation site (mkdocs.yml): doctests as code, Sphinx roles as code.

The docstrings hold runnable ``>>>`` examples (run by ``pytest --doctest-modules``), often
under an ``Example:`` heading, which the Google-style parser renders as an admonition whose
body is Markdown. In Markdown a ``>>>`` line is a nested block quote and ``x[0][1]`` a
reference link, so each run of doctest lines (the prompts and the expected output up to the
next blank line) is wrapped in a ``pycon`` code fence before the docstring is parsed.
Sphinx cross-reference roles (``:class:`~fptt_ext.FPTT```) become plain code spans, a
``.. math::`` block a code block of its LaTeX, and a paragraph's closing ``::`` (reST's
literal-block marker, whose indented block Markdown already shows as code) a ``:``.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):`~?([^`]+)`")


def plain_roles(text: str) -> str:
    r"""Sphinx roles to Markdown code spans; ``~`` keeps the last dotted name.

    >>> plain_roles("see :class:`~fptt_ext.fptt.FPTT` and :func:`fptt_ext.data.rate`")
    'see `FPTT` and `fptt_ext.data.rate`'
    """
    return _ROLE.sub(lambda m: "`" + (m.group(1).rsplit(".", 1)[-1] if m.group(0).count("`~") else m.group(1)) + "`",
                     text)


def fence_doctests(text: str) -> str:
    r"""Wrap every doctest block of ``text`` in a fenced ``pycon`` code block.

    >>> fence_doctests("Example:\n    >>> 1 + 1\n    2\n\nDone.").splitlines()
    ['Example:', '    ```pycon', '    >>> 1 + 1', '    2', '    ```', '', 'Done.']
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rst_blocks(text: str) -> str:
    r"""reST ``.. math::`` blocks to fenced ``latex`` code; ``text::`` before a literal block to ``text:``.

    >>> rst_blocks(".. math::\n    a = b\n\nText::\n\n    code").splitlines()
    ['```latex', 'a = b', '```', '', 'Text:', '', '    code']
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":
            indent = line[: len(line) - len(line.lstrip())]
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            width = min(len(b) - len(b.lstrip()) for b in block if b.strip()) if block else 0
            out += [f"{indent}```latex", *(f"{indent}{b[width:]}" for b in block), f"{indent}```", ""]
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            line = line[: line.rindex("::")] + ":"
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctest blocks of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(rst_blocks(fence_doctests(obj.docstring.value)))
