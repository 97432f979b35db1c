"""Progress bars for long reads, on a terminal only (tqdm, drawn on stderr).

Reading 20,000 photos takes minutes, and so does one pass over a large streamed split (an epoch,
teacher outputs, an evaluation); a bar says how far it got. Logs and pipes (CI) get none: the
commands print one line per stage already, and a bar redrawn with carriage returns is noise there.
``--quiet`` turns bars off too (``set_bars``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
MIN_ITEMS = 200  # below this, reading is over before a bar is worth drawing
MIN_SAMPLES = 2_000  # a streamed pass over fewer samples is over before a bar is worth drawing
_state = {"bars": True, "open": 0}  # open: batch bars being drawn (their files get no bar of their own)


def set_bars(on: bool) -> None:
    """Whether bars may be drawn at all (the CLI turns them off with --quiet)."""
    _state["bars"] = on


def _drawn(count: int, least: int) -> bool:
    return _state["bars"] and count >= least and sys.stderr.isatty()


def reading(items: Sequence[T], what: str) -> Iterator[T]:
    """Iterate ``items``, with a tqdm bar on an interactive stderr when there are many of them."""
    if _state["open"] or not _drawn(len(items), MIN_ITEMS):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=what, unit="file", leave=False, file=sys.stderr)


def batch_bar(batches: Iterator[T], samples: int, what: str) -> Iterator[T]:
    """``batches`` of a pass over ``samples`` samples, with a bar counting samples on a terminal.

    The bar is cleared as the last batch is handed out, not when the generator ends: Keras stops
    drawing from a tf.data pipeline of known length without exhausting it, and its epoch line would
    otherwise land on the bar's line."""
    if not _drawn(samples, MIN_SAMPLES):
        yield from batches
        return
    from tqdm import tqdm

    _state["open"] += 1
    bar = tqdm(total=samples, desc=what, unit="sample", leave=False, file=sys.stderr)
    try:
        for batch in batches:
            bar.update(len(batch))
            if bar.n >= samples:
                _finish(bar)
            yield batch
    finally:
        _finish(bar)


def _finish(bar) -> None:
    if not bar.disable:  # tqdm sets disable once closed
        bar.close()
        _state["open"] -= 1
