"""Templates of a site's host: the agent's systemd unit and a new server's cloud-init.

Data only; `failover.agent.install` renders them.
"""
