"""Structured log lines: ``event=NAME key=value ...``, one per thing that happened."""

from __future__ import annotations

import json
import logging


def log_event(logger: logging.Logger, event: str, **fields: object) -> None:
    """Log one line ``event=dns.apply provider=bind9 changes=1`` at INFO on ``logger``."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in '="' for c in text):
            text = json.dumps(text)  # quoted, so the line still splits on spaces
        parts.append(f"{key}={text}")
    logger.info(" ".join(parts))
