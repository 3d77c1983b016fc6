"""The one exception type that means "the user asked for something that cannot be done".

Library code raises `NanobertError` with a message that says what is wrong and how to fix it;
the CLI prints that message on one line and exits non-zero, without a traceback. Anything else
that escapes is a bug and keeps its traceback.
"""


class NanobertError(Exception):
    """A user-facing error: bad input, a missing file, an inconsistent option."""
