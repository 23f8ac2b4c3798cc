"""``\\boxed{...}`` spans: finding, stripping and writing them, brace-depth aware.

Shared by the format contract (which strips a trace's own boxes and writes the label's)
and by answer extraction (which reads the model's last box), so both sides agree on what
a box is. A backslash-escaped brace (``\\{`` or ``\\}``) is content, not structure: that is
how an answer with unbalanced braces is written into a balanced box.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

BOXED_OPEN = re.compile(r"\\boxed\{")


def find_closing_brace(text: str, start: int) -> int | None:
    """Index just past the ``}`` that closes the ``{`` opened before ``start``, or None."""
    depth = 1
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "{}":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def iter_boxed(text: str) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, content)`` for every balanced ``\\boxed{...}`` in order.

    An unbalanced ``\\boxed{`` (a truncated generation) is skipped; scanning resumes after it.
    """
    pos = 0
    while True:
        m = BOXED_OPEN.search(text, pos)
        if m is None:
            return
        end = find_closing_brace(text, m.end())
        if end is None:
            pos = m.end()
            continue
        yield m.start(), end, text[m.end() : end - 1]
        pos = end


def strip_boxed(text: str) -> str:
    """Remove every balanced ``\\boxed{...}`` span; keep an unbalanced ``\\boxed{`` literally."""
    out, pos = [], 0
    for start, end, _ in iter_boxed(text):
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def escape_unbalanced_braces(answer: str) -> str:
    """Escape the braces of ``answer`` that have no partner, so ``\\boxed{answer}`` closes
    where it should. Balanced braces (``\\frac{1}{2}``) are left untouched."""
    chars = list(answer)
    open_stack: list[int] = []
    unmatched: set[int] = set()
    i = 0
    while i < len(chars):
        ch = chars[i]
        if ch == "\\" and i + 1 < len(chars) and chars[i + 1] in "{}":
            i += 2
            continue
        if ch == "{":
            open_stack.append(i)
        elif ch == "}":
            if open_stack:
                open_stack.pop()
            else:
                unmatched.add(i)
        i += 1
    unmatched.update(open_stack)
    escaped = "".join("\\" + c if i in unmatched else c for i, c in enumerate(chars))
    # A trailing backslash would escape the box's own closing brace; a space keeps them
    # apart and extraction strips it again.
    return escaped + " " if escaped.endswith("\\") else escaped


def unescape_braces(text: str) -> str:
    """Undo :func:`escape_unbalanced_braces` for comparison with a label."""
    return text.replace("\\{", "{").replace("\\}", "}")


def box(answer: str) -> str:
    """``\\boxed{answer}`` with the content guaranteed to be balanced."""
    return "\\boxed{" + escape_unbalanced_braces(answer) + "}"
