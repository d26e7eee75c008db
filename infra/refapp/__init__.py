"""Reference social app of the failover lab: users, follows, media and posts.

One instance runs per site, next to that site's PostgreSQL (primary or streaming
standby) and S3 bucket. Run it with ``python -m infra.refapp``; build it in-process
with `infra.refapp.api.create_app`.
"""
