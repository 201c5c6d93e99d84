"""`UserError`: a failure caused by what the user gave (a file, a config key or value, a dataset name).

Command-line tools print its message as one line, without a traceback, and exit with status 2
(`focus.engine.cli.run_main`); any other exception is an internal error and keeps its traceback. The message
names the culprit and says what to do. Subclasses also derive from the built-in type a caller would expect
(`ValueError`, `FileNotFoundError`, `KeyError`), so existing `except` clauses keep working.
"""

__all__ = ["UserError", "UnsafeCheckpointError", "BadFileError", "MissingFileError", "UnknownNameError",
           "DatasetError"]


class UserError(Exception):
    """An error in the user's input; `str(err)` is the one line a tool prints."""


class UnsafeCheckpointError(UserError):
    """A checkpoint or weight file whose loading would need more than tensors, arrays, numbers, strings and
    plain containers (so could run code)."""


class BadFileError(UserError, ValueError):
    """An input file that cannot be read or does not fit (corrupt image, mask of another size). `path` names
    the culprit; training skips such samples and evaluation excludes them (counted and reported)."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class MissingFileError(BadFileError, FileNotFoundError):
    """An input file or folder that does not exist."""


class UnknownNameError(UserError, KeyError):
    """A name (dataset, config key, registry entry) that is not known."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(UserError, ValueError):
    """A dataset that cannot be used as given (no images, images without masks, a bad `folder:` name)."""
