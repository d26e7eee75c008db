"""Drills: a workload that uses the app the way its users do, measured."""
