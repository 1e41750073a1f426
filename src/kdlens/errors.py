"""Errors that kdlens reports to a user as one line, without a traceback."""


class KdlensError(Exception):
    """A problem with the user's input (config, data, checkpoint, output folder).

    The CLI prints ``str(error)`` on one line and exits with code 2; library users catch it.
    """


class ConfigError(KdlensError):
    """The config names an unknown field, has a wrong type, or an impossible value."""


class DataError(KdlensError):
    """A dataset cannot be found, loaded, or is unusable."""


class OutputError(KdlensError):
    """The run folder cannot be written: permissions, a read-only or a full disk."""


class CheckpointError(KdlensError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the model or data."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type when empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
