"""Error types that carry the CLI exit code, so every layer can fail with a one-line reason.

Exit-code convention: 0 ok, 1 failure while doing the work, 2 bad usage or bad input.
"""

from __future__ import annotations


class KrqaError(Exception):
    """A failure the user can act on; the CLI prints ``str(err)`` as one line and exits ``exit_code``."""

    exit_code: int = 1


class InputError(KrqaError):
    """Bad input: a file, field, flag or request the user gave us is wrong."""

    exit_code = 2


class ConfigError(InputError):
    """A YAML config or an override that does not validate."""

