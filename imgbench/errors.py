"""One exception family for expected failures: the CLI prints its message on one line and exits non-zero."""


class ImgbenchError(Exception):
    """An expected failure with a message meant for the user (what was wrong, the value, what to do)."""

    exit_code = 1


class ManifestError(ImgbenchError):
    """A model manifest is missing, unreadable or does not match the schema."""


class DatasetError(ImgbenchError):
    """A dataset folder is missing, empty or holds files that are not readable images."""


class StackError(ImgbenchError):
    """A native service failed to start, to become ready, or to stop."""


class PortInUseError(StackError):
    """A service's port is already taken on 127.0.0.1."""


class LoadResultError(ImgbenchError):
    """A load result file is missing, unreadable or does not match the schema."""


class UnknownServerError(ImgbenchError, ValueError):
    """A server name that ``imgbench.servers`` does not know (the message lists those it knows)."""
