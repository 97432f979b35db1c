"""The one error type for problems the user can fix (bad path, corrupt file, wrong data shape...)."""


class UserError(Exception):
    """A problem with the user's input. Its message is one line: what is wrong and how to fix it.

    Command-line entry points print it without a traceback and exit with code 2.
    """
