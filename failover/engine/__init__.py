"""The failover engine: plans, their steps, the executor and its journal, status."""
