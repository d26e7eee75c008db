"""DNS plane: providers that hold the app's records.

``records`` (Record, Create/Update/Delete, Plan, diff) is plain data;
``base.DnsProvider`` is the one base class (records, plan, apply, verify);
``rfc2136`` and ``route53`` implement it; ``publish`` writes to all of them.
"""
