"""What was lost: the acknowledged writes the new primary's database and bucket lack.

Asked of the new primary itself, by id, never taken from the workload's own
view of its success.
"""

from __future__ import annotations

from dataclasses import dataclass

from failover.data import objects
from failover.drill.workload import WorkloadLog, missing_media, missing_posts
from failover.engine.deployment import Deployment
from failover.exceptions import FailoverError


@dataclass(frozen=True)
class Losses:
    """The acknowledged writes the new primary lacks, and what could not be checked."""

    posts: tuple[str, ...]
    media: tuple[str, ...]  # rows missing, or rows whose object is missing
    notes: tuple[str, ...] = ()


def find_losses(deployment: Deployment, site: str, log: WorkloadLog) -> Losses:
    """The acknowledged posts and media of ``log`` that ``site``'s database and bucket lack."""
    posts = [e.id for e in log.acked_posts() if e.id]
    media = [e.id for e in log.acked_media() if e.id]
    notes: list[str] = []
    endpoint = deployment.app_endpoint(site)
    lost_posts = missing_posts(endpoint, posts)
    lost_media = set(missing_media(endpoint, media))
    store = deployment.config.site(site).objects
    try:
        keys = objects.Bucket(store).list()  # a refusal names the keys file
    except FailoverError as exc:
        notes.append(f"media objects not checked: {exc}")
    else:
        absent = {m for m in media if f"media/{m}" not in keys}
        if absent - lost_media:
            notes.append(
                f"{len(absent - lost_media)} media rows reached {site} without "
                "their objects: objects are copied when a move begins and ends, so a "
                "site that goes dark keeps what it took since"
            )
        lost_media |= absent
    return Losses(tuple(lost_posts), tuple(sorted(lost_media)), tuple(notes))
