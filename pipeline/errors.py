"""Errors that are the user's to fix (a bad key, a missing file, a bad archive): the stages print their message
on one line, without a traceback. Anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """Raised with a message that names the file or parameter and says what was expected."""
