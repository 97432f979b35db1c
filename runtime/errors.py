"""The error types the command lines turn into one line and an exit code instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input. Its message is one line: what is wrong and how to fix it.

    Command-line entry points print it without a traceback and exit with code 2.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying one true line about what the interrupted command kept on disk.

    Raised ``from`` the original KeyboardInterrupt by code that knows what it leaves behind (a
    study in its storage, a partial run); the command line prints ``interrupted: <kept>`` and
    exits 130. A plain KeyboardInterrupt means nothing is known to be kept.
    """

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept
