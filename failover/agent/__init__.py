"""The site agent: one per site's host, the engine's only hands on it.

It supervises the host's PostgreSQL and app, performs the host operations
the engine asks for (fence, rejoin, start, stop) behind a signed HTTP API,
idempotent by operation id, and holds the primary's lease: a primary whose
lease lapses fences itself.
"""
