"""mnas: platform-aware neural architecture search (MnasNet, reproduced)."""

__version__ = "0.1.0"


class MnasError(ValueError):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""
