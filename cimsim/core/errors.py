"""The one exception type that means "the user asked for something we cannot do".

The CLI turns a :class:`CimsimError` into a single line on stderr and exit code 2; any other
exception is a bug in cimsim and keeps its traceback.
"""


class CimsimError(Exception):
    """A user-facing error: bad input, unknown name, missing or corrupt file.

    The message must make sense on its own, as one line, without a traceback.
    """
