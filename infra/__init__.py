"""What gets deployed and where: the reference app, compute adapters, the local lab."""
