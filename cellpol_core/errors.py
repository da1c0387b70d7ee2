"""Errors that mean "the user's input is wrong", as opposed to bugs."""


class InputError(ValueError):
    """Bad user input: a missing, unreadable or inconsistent file or option.

    The message is one line that names the file (when there is one) and the
    problem. The CLI prints it to stderr and exits with code 2; the GUI shows it
    in a dialog.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        text = f"{self.path}: {message}" if self.path else str(message)
        super().__init__(text)


class Cancelled(Exception):
    """A long job was cancelled between two of its steps."""


class OutputError(InputError):
    """An output cannot be written: a read-only folder, a file where a folder is
    expected, a full disk. One line naming the path; exit code 2 in the CLI, like
    bad input, since the user fixes it the same way (another place, more space).
    """
