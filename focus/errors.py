"""`UserError`: a failure caused by what the user gave (a file, a config key or value, a dataset name).

Command-line tools print its message as one line, without a traceback, and exit with a non-zero status
(`focus.engine.cli.run_main`); any other exception is an internal error and keeps its traceback. The message
names the culprit and says what to do.
"""

__all__ = ["UserError", "UnsafeCheckpointError"]


class UserError(Exception):
    """An error in the user's input; `str(err)` is the one line a tool prints."""


class UnsafeCheckpointError(UserError):
    """A checkpoint or weight file whose loading would need more than tensors, arrays, numbers, strings and
    plain containers (so could run code)."""
