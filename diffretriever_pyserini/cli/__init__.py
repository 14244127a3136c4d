"""``diffretriever-pyserini`` (= ``python -m diffretriever_pyserini``): one entry point, a table of sub-commands
(:mod:`~diffretriever_pyserini.cli.parser`), each a function of :mod:`~diffretriever_pyserini.cli.commands`.

Every run setting of :class:`~diffretriever_pyserini.pipeline.settings.RunConfig` is a flag of the sub-commands that
read its stage; a failure prints one line and exits with 2.
"""

from __future__ import annotations

import logging
import sys
import traceback

log = logging.getLogger("diffretriever_pyserini")


def main(argv=None) -> int:
    """Run a sub-command; a failure prints one line (``diffretriever-pyserini: error: ...``) and returns 2, with the
    traceback only under ``-v``."""
    from diffretriever_pyserini.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    received = _interrupt_on_signals()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted(received)
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line (the traceback under -v)
        if received:  # a signal arrived inside native code, which turned it into another exception
            return _interrupted(received)
        if args.verbose:
            traceback.print_exc()
        print(f"diffretriever-pyserini: error: {describe_error(exc)}", file=sys.stderr)
        return 2


def _interrupt_on_signals() -> list[int]:
    """SIGINT and SIGTERM both stop a command the same way: a KeyboardInterrupt in the main thread, so every
    ``with`` block removes its temporary output and lock on the way out. Returns the list the signals are noted in
    (a signal left ignored by the parent process stays ignored)."""
    import signal

    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)
    return received


def _interrupted(received: list[int]) -> int:
    """One line for an interrupted command; exit status 128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
    import signal

    name = signal.Signals(received[0]).name if received else "SIGINT"
    print(f"\ndiffretriever-pyserini: interrupted ({name}); no output was left half-written, run the same command "
          "again to resume", file=sys.stderr)
    return 128 + (received[0] if received else signal.SIGINT)


def describe_error(exc: BaseException) -> str:
    """One line for an exception: a UserError's own message; for anything else its type, message and a hint."""
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.pipeline.settings import SettingError

    if isinstance(exc, SettingError):
        from diffretriever_pyserini.cli.options import with_flags

        return with_flags(exc)
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (run with -v for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
