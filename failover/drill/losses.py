"""What was lost: the acknowledged writes the new primary's database and bucket lack.

Asked of the new primary itself, by id, never taken from the workload's own
view of its success.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

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
    # Acknowledged media whose object is not in the site's bucket, whatever became of the row:
    # what the copying of objects lost (a row is the database's loss).
    objects: tuple[str, ...] = ()


def find_losses(deployment: Deployment, site: str, log: WorkloadLog) -> Losses:
    """The acknowledged posts and media of ``log`` that ``site``'s database and bucket lack."""
    posts = [e.id for e in log.acked_posts() if e.id]
    media = [e.id for e in log.acked_media() if e.id]
    notes: list[str] = []
    endpoint = deployment.app_endpoint(site)
    try:
        lost_posts = missing_posts(endpoint, posts)
        lost_media = set(missing_media(endpoint, media))
    except psycopg.Error as exc:
        # Nothing there to hold them (a move that never finished): every write counts as
        # lost, which is what a user of that site would find.
        notes.append(f"{site}'s database does not answer ({' '.join(str(exc).split())[:120]}):"
                     " every acknowledged write counts as lost")
        return Losses(tuple(posts), tuple(sorted(media)), tuple(notes), tuple(sorted(media)))
    store = deployment.config.site(site).objects
    try:
        keys = objects.Bucket(store).list()  # a refusal names the keys file
    except FailoverError as exc:
        notes.append(f"media objects not checked: {exc}")
        absent = set(media)  # not seen there: counted lost
    else:
        absent = {m for m in media if f"media/{m}" not in keys}
        if absent - lost_media:
            notes.append(
                f"{len(absent - lost_media)} media rows reached {site} without "
                "their objects: objects are copied seconds after they are taken, so a "
                "site that goes dark keeps its last moments' alone"
            )
        lost_media |= absent
    return Losses(tuple(lost_posts), tuple(sorted(lost_media)), tuple(notes),
                  tuple(sorted(absent)))
