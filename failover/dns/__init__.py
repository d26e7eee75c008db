"""DNS plane: providers that hold the app's records.

``records`` (Record, Create/Update/Delete, Plan, diff) is plain data;
``base.DnsProvider`` is the one base class (records, plan, apply, verify);
``rfc2136`` and ``route53`` implement it; ``registry`` finds a kind by its
``kind`` tag (the config's union, the provider, the controller's reader) and
builds the configured providers; ``authoritative`` asks a server directly;
``publish`` writes to all of them.
"""
