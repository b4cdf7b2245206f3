"""Result tables of the benchmarks: label columns left-aligned, number columns right-aligned (rich)."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from rich.console import Console
from rich.table import Table


def new_table(title: str, columns: Iterable[str], left: Collection[str] = ()) -> Table:
    """A table with `columns`; those named in `left` (labels: task, mode, ...) left-aligned, the rest right."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def print_tables(*tables: Table, width: int = 120, console: Console | None = None) -> Console:
    """Print `tables` one after the other, `width` columns wide (tables wider than a terminal stay whole
    in logs); returns the console used."""
    console = console or Console(width=width)
    for table in tables:
        console.print(table)
    return console
