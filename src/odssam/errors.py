"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed folder, a bad
config value) raises :class:`OdsSamError` with a message that names the file and the
problem. The command-line entry point prints these messages without a traceback.
"""


class OdsSamError(Exception):
    """An error whose message is meant for the user, not a bug in odssam."""
