"""The failover project's Pulumi program: one site per stack (``Pulumi.<stack>.yaml``)."""

from infra.components.program import main

main()
