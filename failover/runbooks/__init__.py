"""Runbooks for on-call staff, rendered from the plans the tool runs.

One Markdown file per move kind (``moves``): each step of the move's plan
with what it does and why, the tool's command, how to check it, the manual
fallback without the tool, its typical duration from the journal, and what
to do when it fails. The words and commands of each step kind are data
beside the actions (``texts``), keyed by action name; ``render`` turns a
move into Markdown and ``files`` writes or checks a directory of them.
"""
