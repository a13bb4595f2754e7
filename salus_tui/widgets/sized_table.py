"""Fills a Textual `DataTable` with every column sized to its contents up front.

A `DataTable` measures new rows only when its message queue is next idle. If the console draws in
between (a loaded machine), the cells are rendered at the columns' label widths and kept in the
table's render cache, whose key holds no column width, so they stay cut off after the measurement
(an outcome column showing "collisi"). Columns given their width when they are added draw right from
the first frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


def cell_width(cell: Cell) -> int:
    """Terminal cells taken by a one-line cell."""
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def fill_sized_table(table: DataTable, labels: Sequence[str], rows: Sequence[Sequence[Cell]],
                     keys: Sequence[str] | None = None) -> None:
    """Replaces the columns and rows of `table`: one column per label, as wide as its widest cell
    (or its label), then `rows` (each one cell per label) with row keys `keys` (default none).

    Raises:
        ValueError: a row without one cell per label, or `keys` of another length than `rows`.
    """
    if any(len(row) != len(labels) for row in rows):
        raise ValueError(f"every row needs {len(labels)} cells ({', '.join(labels)})")
    if keys is not None and len(keys) != len(rows):
        raise ValueError(f"{len(keys)} row keys for {len(rows)} rows")
    widths = [max([cell_len(label), *(cell_width(row[i]) for row in rows)]) for i, label in enumerate(labels)]
    table.clear(columns=True)
    for label, width in zip(labels, widths):
        table.add_column(label, width=width, key=label)
    for i, row in enumerate(rows):
        table.add_row(*row, key=None if keys is None else keys[i])
