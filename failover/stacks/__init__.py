"""The Pulumi stacks: opening them through the Automation API, and reading their outputs."""
