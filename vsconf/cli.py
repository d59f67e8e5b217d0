"""The ``vsconf`` command's entry point: every failure a user can cause ends as one line.

Signal handlers go in before the heavy imports, so that an interrupt at any moment --
even while Python is still loading NumPy -- unwinds like an exception: every open
:class:`~vsconf.files.Transaction` removes its temporary files, and the process exits
with ``128 + signal``.  Errors print as ``vsconf: error: FILE[:LINE:COL]: ...`` with
exit code 1; usage errors exit 2; a closed stdout (``vsconf plan ... | head``) ends
quietly with 141, as a shell pipeline expects.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from vsconf.errors import MatchError, SpecError, VsconfError, printable
from vsconf.files import abort_all, describe_os_error


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like an interrupt, so every temporary file is removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# The signal that stopped the run, if one did.  An exception raised by a handler while an
# extension module is loading (NumPy, onnx) comes out of the import as an ImportError: the
# record tells that error from a real one.
_received: int | None = None


def _terminate(signum: int, frame) -> None:
    global _received
    _received = signum
    raise Terminated(signum)


def _interrupt(signum: int, frame) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)


def _stopped(signum: int) -> int:
    """Exit as the signal asks: every temporary removed, one line, 128 + the signal's number."""
    abort_all()
    if signum == signal.SIGINT:
        print("vsconf: interrupted", file=sys.stderr)
    else:
        print(f"vsconf: stopped by {signal.Signals(signum).name}", file=sys.stderr)
    return 128 + signum


def _quiet_stdout() -> None:
    """After a closed pipe, send what is left of stdout nowhere (Python would complain at exit)."""
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


def _error_text(exc: VsconfError) -> str:
    """The error as printed: one line, or one line per problem of a :class:`MatchError`,
    each with its control characters escaped (a crafted name cannot forge a line)."""
    if isinstance(exc, MatchError) and exc.cli_message == str(exc):
        return "\n".join(printable(problem.format()) for problem in exc.problems)
    return printable(exc.cli_message)


def _fewer_collections() -> None:
    """Collect cyclic garbage less often: a model of a million tensors makes millions of
    small objects (parsed JSON, tensor records, plan entries) and hardly a cycle, and with
    Python's default thresholds (700, 10, 10) the collector walks them over and over -- half
    of the time of reading a manifest of a million tensors.  Young objects are still
    collected every 50,000 allocations; everything older is left alone unless a run makes
    tens of millions.  The command is one process, so this is its decision to make."""
    import gc

    gc.set_threshold(50_000, 1_000, 1_000)


def main(argv: Sequence[str] | None = None) -> int:
    _install_signal_handlers()
    _fewer_collections()
    try:
        from vsconf import commands, schedule

        schedule.ENTRY_POINT = True  # spawned workers import the console script, which runs nothing
        args = commands.build_parser().parse_args(argv)
        return args.run(args)
    except SpecError as exc:
        commands.print_spec_error(exc)
        return 1
    except VsconfError as exc:
        print(f"vsconf: error: {_error_text(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `vsconf plan ... | head`: the reader has all it wanted
        abort_all()
        _quiet_stdout()
        return 141
    except OSError as exc:
        abort_all()
        where = f"{exc.filename}: " if exc.filename else ""
        print(printable(f"vsconf: error: {where}{describe_os_error(exc)}"), file=sys.stderr)
        return 1
    except MemoryError:
        abort_all()
        print("vsconf: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _stopped(signal.SIGINT)
    except Terminated as exc:
        return _stopped(exc.signum)
    except Exception as exc:  # a bug: one line, not a traceback, unless asked for
        if _received is not None:  # a signal that an import turned into another error
            return _stopped(_received)
        abort_all()
        if os.environ.get("VSCONF_TRACEBACK"):
            raise
        print(
            printable(
                f"vsconf: error: internal error ({type(exc).__name__}: {exc}); "
                "set VSCONF_TRACEBACK=1 to see where, and please report it"
            ),
            file=sys.stderr,
        )
        return 70
