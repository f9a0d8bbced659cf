"""Telling the user's mistakes from our bugs, for the command line and the scripts.

:func:`user_error_message` returns one line for an error that says what the user must
change -- a store of another search, data that is not on this machine, a model or data
that does not fit, a missing file -- and ``None`` for anything else (a bug of ours, which
deserves its traceback)."""

from __future__ import annotations

__all__ = ["user_error_message"]


def user_error_message(err: BaseException) -> str | None:
    from .data.sources import DataError
    from .data.tasks import DatasetUnavailableError
    from .search.store import StoreConfigError, StoreError
    from .train.user_model import UserInputError

    if isinstance(err, StoreConfigError):
        keys = list(err.differences)
        shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
        return (f"the store holds a search with other settings (differing: {shown}); use "
                f"a new --store path to start a new search, or repeat that search's "
                f"settings to resume it")
    if isinstance(err, (StoreError, DatasetUnavailableError, UserInputError, DataError,
                        FileNotFoundError)):
        return " ".join(str(err).split()) or type(err).__name__
    return None
