"""The failover project's Pulumi program: one site per stack (``Pulumi.<stack>.yaml``)."""

from infra.components.program import export, site_stack
from infra.components.settings import load_settings

export(site_stack(load_settings()))
