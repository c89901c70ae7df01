"""Errors that sync-admin reports as one line, each with the exit code it maps to."""


class SyncAdminError(Exception):
    """A failure the user can act on; the message says what to do next."""

    exit_code = 1


class CheckFailed(SyncAdminError):
    """A check ran and found problems."""

    exit_code = 1


class BadInput(SyncAdminError):
    """Usage error or bad input: unknown flag, malformed URL, out-of-range value."""

    exit_code = 2


class DatabaseUnavailable(SyncAdminError):
    """The database cannot be reached, or is not migrated."""

    exit_code = 3


class Interrupted(SyncAdminError):
    """Ctrl-C: the message says what was saved or where things stand."""

    exit_code = 130
