"""A progress bar for reading many files, on a terminal only (tqdm, drawn on stderr).

Reading 20,000 photos takes minutes; a bar says how far it got. Logs and pipes (CI) get nothing:
the commands print one line per stage already, and a bar redrawn with carriage returns is noise there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
MIN_ITEMS = 200  # below this, reading is over before a bar is worth drawing


def reading(items: Sequence[T], what: str) -> Iterator[T]:
    """Iterate ``items``, with a tqdm bar on an interactive stderr when there are many of them."""
    if len(items) < MIN_ITEMS or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=what, unit="file", leave=False, file=sys.stderr)
