"""Markdown tables of benchmark rows, shared by the scripts in bench/."""

from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    """Rows of equal keys as a Markdown table: the keys as the header, floats to 4 significant digits."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)
