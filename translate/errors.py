"""The one exception type users see: a single line naming the file, key or value at fault."""


class TranslateError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits with code 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
