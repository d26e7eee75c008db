"""Pulumi ComponentResources of the stacks in ``stacks/``: one per building block.

``AwsSite`` and ``HetznerSite`` (a site's network, firewall, host running the
agent, address and bucket), ``DnsZone`` (Route 53 and the RFC 2136 server's
key), ``BackupRepo`` (pgBackRest's buckets), and the smaller ones they are made
of (``SiteAgent``, ``VersionedBucket``, ``ApiUser``). Type tokens are
``failover:infra:<Name>``; children are made with ``parent=self``; each ends
with ``register_outputs``. Settings are read in ``settings`` alone, and
``program.site_stack`` puts a site's stack together.

Importing this package needs the ``stacks`` extra (``pip install -e '.[stacks]'``).
"""
