"""The two errors a user meets: `UsageError` for what they typed or pointed at, `RunFailed` for a run that
cannot finish.

A `UsageError` message says what was given, what is needed and how to fix it. It subclasses `ValueError`,
so Python callers that catch `ValueError` keep working; scripts print it as one line and exit with code 2,
as argparse does for a bad flag. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Input the user can fix: a script prints it as one line and exits with code 2."""


class RunFailed(RuntimeError):
    """The run started but could not finish as asked (e.g. non-finite losses); exit code 1, no traceback.

    The message says what was kept on disk and what to change.
    """
