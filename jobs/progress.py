"""What a long run is doing, shown only on a terminal: a scheduled run's log stays clean.

A first run over a history of 20,000 reports takes minutes; a person who started it by hand
sees each step as it begins, and a bar while the emails go out.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def step(text: str) -> None:
    """One line as a step begins."""
    if on_terminal():
        print(f"nearmiss: {text}...", file=sys.stderr, flush=True)


def bar(items: Iterable[T], total: int, what: str) -> Iterator[T]:
    """`items` with a progress bar on the terminal (none elsewhere)."""
    if not on_terminal() or total < 2:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=f"nearmiss: {what}", unit="", leave=False,
                    file=sys.stderr)
