"""Errors of the DNS plane, under the product's ``ProviderError``."""

from __future__ import annotations

from failover.exceptions import ProviderError


class PrerequisiteFailed(ProviderError):
    """The provider refused a change because the record changed since the plan was made.

    Nothing was changed by the refused message or batch; plan again, review, apply.
    """


class ProviderUnreachable(ProviderError):
    """The provider did not answer within its timeout, or refused the connection."""
