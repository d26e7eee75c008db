"""The controllers' shared state: an etcd cluster across the sites, and a leader elected on it.

``etcd.EtcdCluster`` is our small typed wrapper over the etcd client;
``election.Election`` is Patroni's leader key over it; ``config.ClusterConfig``
is the ``watch.cluster`` section that names the members.
"""
