"""``failover evidence``: a dated report of the exit plan, for a person to file.

``gather`` reads what the tool keeps (configuration, drill history, the
controller's approvals, the runbooks' files); ``document`` turns it into
titled sections; ``markdown`` and ``html`` render those, ``chart`` draws the
drills' figures; ``files`` writes all of them into one directory.
"""
