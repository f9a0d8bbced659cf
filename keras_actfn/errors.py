"""Telling the user's mistakes from our bugs, for the command line and the scripts.

:func:`user_error_message` returns one line for an error that says what the user must
change -- a store of another search, data that is not on this machine, a model or data
that does not fit, a missing file, a file that cannot be written or read -- and ``None`` for
anything else (a bug of ours, which deserves its traceback).

:class:`UserError` marks an exception class as one of those (mix it in: ``class
CheckpointError(UserError, ValueError)``); this module imports nothing heavy, so any module
can use it.
"""

from __future__ import annotations

__all__ = ["UserError", "user_error_message"]


class UserError(Exception):
    """Base (or mixin) of errors whose message tells the user what to change; the command
    line prints them as one line with exit status 2."""


#: OSErrors that come from the user's files and folders (a path through a file, no
#: permission...), shown as one line when they name the file
_PATH_ERRORS = (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def user_error_message(err: BaseException) -> str | None:
    from .data.sources import DataError
    from .data.tasks import DatasetUnavailableError
    from .search.engine.store import StoreConfigError, StoreError
    from .train.user_model import UserInputError

    if isinstance(err, StoreConfigError):
        keys = list(err.differences)
        shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
        return (f"the store holds a search with other settings (differing: {shown}); use "
                f"a new --store path to start a new search, or repeat that search's "
                f"settings to resume it")
    if isinstance(err, (UserError, StoreError, DatasetUnavailableError, UserInputError,
                        DataError, FileNotFoundError)):
        return _one_line(err) or type(err).__name__
    if isinstance(err, _PATH_ERRORS) and getattr(err, "filename", None):
        return _one_line(f"{err.filename}: {err.strerror or err}")
    return None
