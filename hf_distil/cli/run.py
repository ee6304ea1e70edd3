"""A script's entry point: a bad input or a failed run ends in one line and an exit code, not a traceback."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import RunFailed, UsageError

EXIT_BAD_INPUT = 2  # as argparse exits for a bad flag
EXIT_FAILED = 1
TRACEBACK_ENV = "HF_DISTIL_TRACEBACK"


def run_script(main: Callable[[], object]) -> None:
    """Call a script's `main()`; a `UsageError` or `RunFailed` becomes one line on stderr and an exit code.

    Set HF_DISTIL_TRACEBACK=1 to see the traceback as well.
    """
    try:
        main()
    except (UsageError, RunFailed) as error:
        if os.environ.get(TRACEBACK_ENV):
            raise
        code = EXIT_BAD_INPUT if isinstance(error, UsageError) else EXIT_FAILED
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
        sys.exit(code)


@contextmanager
def retry_from_the_shell(command: list[str]) -> Iterator[None]:
    """A failed upload (`RunFailed`) also names the shell command that retries it, each word quoted: the library's
    advice is a Python call, and a repository id or folder may hold a space."""
    try:
        yield
    except RunFailed as error:
        raise RunFailed(f"{error}; from the shell: {shlex.join(command)}") from None
