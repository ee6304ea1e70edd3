"""Bad input ends in one line: `UsageError` for what a user typed or pointed at, and the scripts' entry point.

A `UsageError` message says what was given, what is needed and how to fix it. It subclasses `ValueError`,
so Python callers that catch `ValueError` keep working; scripts print it as one line and exit with code 2,
as argparse does for a bad flag. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
TRACEBACK_ENV = "HF_DISTIL_TRACEBACK"


class UsageError(ValueError):
    """Input the user can fix: printed as one line by `run_script`, exit code 2."""


class RunFailed(RuntimeError):
    """The run started but could not finish as asked (e.g. non-finite losses); exit code 1, no traceback.

    The message says what was kept on disk and what to change.
    """


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
