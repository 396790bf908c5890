"""Error hierarchy.

Every error says which object it concerns (``subject``) and whether retrying can
help (``retryable``), so loops decide between backoff and giving up without
parsing messages.
"""

from __future__ import annotations


class DriftdError(Exception):
    """Base class. ``subject`` names the file, key, object or server concerned."""

    retryable: bool = False

    def __init__(self, message: str, *, subject: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.subject = subject
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" if self.subject else self.message


class ConfigError(DriftdError):
    """The configuration file is invalid. ``subject`` is ``file: key.path``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        super().__init__(message, subject=f"{file}: {key}" if key else file)


class ConfigErrors(DriftdError):
    """Several configuration problems, reported at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return self.message


class DesiredStateError(DriftdError):
    """A file of desired state could not be read. ``subject`` is ``file[:line[:column]]``."""

    def __init__(self, message: str, *, file: str, line: int | None = None, column: int | None = None) -> None:
        self.file, self.line, self.column = file, line, column
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(message, subject=where)


class SourceError(DriftdError):
    """A source (Git repository, registry) could not be read. Usually transient."""

    retryable = True


class TargetError(DriftdError):
    """A live target (cluster, AWS account) refused or failed a call."""


class PermissionDenied(TargetError):
    """The credentials lack a permission. Retrying does not help; the message names it."""


class Throttled(TargetError):
    """The API throttled us even after backoff; the object's state is unknown, not drifted."""

    retryable = True
