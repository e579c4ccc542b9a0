"""Exceptions of aiotest. All share the root :class:`AiotestError`, except
:class:`StopUser`, which is a signal from user code rather than an error."""

from __future__ import annotations


class AiotestError(Exception):
    """Root of aiotest's errors."""

    #: Process exit code when this error ends a command-line run.
    exit_code: int = 1


class ConfigError(AiotestError, ValueError):
    """Bad usage: an option, a host URL, or a user class setting.

    The message names the problem and its fix. Exit code 2, as in Locust.
    """

    exit_code = 2


class AiotestFileError(ConfigError):
    """The aiotestfile is missing, does not import, or defines no user class."""


class StopUser(Exception):
    """Raise in a task or ``on_start`` to stop this one user (Locust's ``StopUser``).

    The user's ``on_stop`` still runs; the other users go on.
    """


class ResponseError(AiotestError):
    """Raised by :meth:`aiotest.Response.raise_for_status` for a failed request."""


class InterruptTaskSet(Exception):
    """Raised by ``TaskSet.interrupt()``: hands control back to the parent
    (Locust's ``InterruptTaskSet``); with ``reschedule``, the parent picks
    its next task at once, without a wait."""

    def __init__(self, reschedule: bool = True) -> None:
        super().__init__(reschedule)
        self.reschedule = reschedule


class RescheduleTask(Exception):
    """Raise in a task to end it and go on with the next after a wait."""


class RescheduleTaskImmediately(Exception):
    """Raise in a task to end it and go on with the next at once."""


class StopTest(Exception):
    """Raise in user code to end the whole run (Locust's ``StopTest``)."""
