"""Data plane: PostgreSQL roles and replication, object storage.

``postgres`` reaches a server and asks what it is; ``replication`` (sync,
catch-up, promote) and ``fencing`` (with the pg_hba.conf rules in ``hba``)
are what a failover does to the databases, through ``statements``; ``pgasync``
is the controller's probe session, which giving up on leaves nothing open.
``objects`` talks to one S3 endpoint; ``objectsync`` copies between two and
verifies.
"""
