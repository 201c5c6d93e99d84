"""The error layer shared by every command-line tool: `run_main(main, argv)`.

A `UserError` (bad file, config key or value, dataset name; `focus.errors`) is printed as one line
``error: <message>`` on stderr and the tool exits with status 2; Ctrl-C exits with status 130 and one line. Any
other exception is an internal error and keeps its traceback. ``--debug`` anywhere on the command line (it is
removed before the tool parses its arguments) or ``FOCUS_DEBUG=1`` shows the traceback of user errors too.
"""
import os
import sys

from ..errors import UserError

__all__ = ["run_main", "debug_enabled"]

DEBUG_HINT = "(--debug or FOCUS_DEBUG=1 shows the traceback)"


def debug_enabled(argv=()):
    return "--debug" in argv or os.environ.get("FOCUS_DEBUG", "").lower() not in ("", "0", "false", "no")


def one_line(err):
    """The message of a `UserError`. One raised in a data-loader worker is re-raised by PyTorch with the worker's
    traceback folded into its message ("Caught ... in DataLoader worker process 0. Original Traceback ..."):
    keep only the original message, its last line."""
    msg = str(err).strip()
    if "Original Traceback" in msg:
        last = msg.splitlines()[-1]
        msg = last.split(": ", 1)[1] if last.startswith(type(err).__module__) and ": " in last else last
    return " ".join(msg.split())


def run_main(main, argv=None, prog=None):
    """Call ``main(argv)`` and turn its user errors into one line and an exit status.

    Returns the exit status: `main`'s integer result (0 for any non-integer result such as a metrics dict),
    2 for a `UserError`, 130 for Ctrl-C. Use as ``sys.exit(run_main(main))``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    prog = prog or os.path.basename(sys.argv[0] or "focus")
    previous = os.environ.get("FOCUS_DEBUG")
    if debug:  # library code (e.g. the trainer's log filter) asks `debug_enabled()`
        os.environ["FOCUS_DEBUG"] = "1"
    try:
        ret = main(argv)
    except UserError as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted (Ctrl-C); files already written are complete", file=sys.stderr, flush=True)
        return 130
    finally:
        if debug and previous is None:
            os.environ.pop("FOCUS_DEBUG", None)
    return ret if isinstance(ret, int) and not isinstance(ret, bool) else 0

