"""Small Markdown helpers: tables and number formatting the report uses everywhere."""

from __future__ import annotations

from collections.abc import Sequence

MISSING = "–"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; ``None`` cells print as a dash.

    >>> print(table(["a", "b"], [[1, None]]))
    | a | b |
    |---|---|
    | 1 | – |
    """

    def cell(value: object) -> str:
        # A literal pipe (as in "max |Δlogit|") would split the cell.
        return MISSING if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    return "\n".join(lines)


def pct(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 1) -> str | None:
    if value is None:
        return None
    return f"{value:,.{digits}f}"


def mib(n_bytes: float | None) -> str | None:
    return None if n_bytes is None else f"{n_bytes / 2**20:,.1f} MiB"


def ratio(numerator: float | None, denominator: float | None) -> str | None:
    if numerator is None or not denominator:
        return None
    return f"{numerator / denominator:.2f}×"
