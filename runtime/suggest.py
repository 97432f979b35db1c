"""'did you mean ...?': the one wording for a misspelt name, wherever a name is looked up.

In runtime/ because the device package cannot import the host's, while the host (recipes,
datasets, models) can import this.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'name'?"`` for the closest of ``choices`` (case ignored), or ``""``."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


def unknown_name_message(what: str, name: str, valid: Iterable[str], listed: str | None = None) -> str:
    """``"unknown X 'nme'; did you mean 'name'? Valid: ..."``; ``listed`` replaces the sorted names."""
    names = sorted(valid)
    return f"unknown {what} {name!r}{did_you_mean(name, names) or ';'} Valid: {listed or ', '.join(names)}"
