"""Errors of the lab, under the product's one root."""

from __future__ import annotations

from failover.exceptions import FailoverError


class LabError(FailoverError):
    """The lab cannot be started, reached or stopped as asked."""


class MissingBinary(LabError):
    """A server program the lab needs is not installed."""

    exit_code = 3


class PortTaken(LabError):
    """Another process already listens where the lab would."""


class LabNotRunning(LabError):
    """A command needs the lab, and none is running in this state dir."""
