"""The embedded local lab: real servers on loopback, one "cloud" per address."""
