"""User-facing errors: one readable line, no traceback, non-zero exit (see cli)."""


class UserError(Exception):
    """A problem with the user's input that the CLI prints as one line and exits with code 2."""

    exit_code = 2


class VerificationFailed(Exception):
    """verify found a mismatch; the CLI prints the message and exits with code 1."""

    exit_code = 1
