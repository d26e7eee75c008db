"""Making a site's host at a provider: the address, the network, the server and its user-data."""
