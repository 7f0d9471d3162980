"""Errors that are the user's to fix.

The CLI prints a `UserError` as one line (`error: ...`) and exits with status 2 instead
of showing a traceback: the message itself must say what was wrong and how to fix it.
"""


class UserError(Exception):
    """Bad input: a path, a config key, a data file. The message explains the fix."""
