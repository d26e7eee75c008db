"""The controller (failover watch): probes, notices, the policy, its HTTP API."""
