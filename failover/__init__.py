"""failover: move a service between cloud providers in minutes, with proof."""

__version__ = "0.1.0"
