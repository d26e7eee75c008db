"""Data plane: PostgreSQL roles and replication, object storage."""
