"""The fence's pg_hba.conf, as text: which lines a fenced primary keeps.

Pure text in, text out, so that the rules are tested without a server. The
fence itself (writing the file, reloading, ending sessions) is in
``fencing``.
"""

from __future__ import annotations

from failover.exceptions import StepFailed

FENCE_MARKER = "# failover fence:"
HBA_TYPES = frozenset({"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"})


def is_fence(text: str) -> bool:
    """Whether a pg_hba.conf's text is a fence that ``fenced_hba`` wrote."""
    return text.startswith(FENCE_MARKER)


def hba_fields(line: str) -> list[str]:
    """The whitespace-separated fields of one pg_hba.conf line, quotes kept, comment dropped."""
    fields: list[str] = []
    field, quoted = "", False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "#":
            break
        elif not quoted and ch.isspace():
            if field:
                fields.append(field)
            field = ""
            continue
        field += ch
    return [*fields, field] if field else fields


def names_superuser(field: str, superuser: str) -> bool:
    """Whether a user field (``all``, ``a,"b c"``) lets ``superuser`` in."""
    items, item, quoted, was_quoted = [], "", False, False
    for ch in field + ",":
        if ch == '"':
            quoted, was_quoted = not quoted, True
        elif ch == "," and not quoted:
            items.append((item, was_quoted))
            item, was_quoted = "", False
        else:
            item += ch
    return any(name == superuser or (name == "all" and not q) for name, q in items)


def fenced_hba(original: str, superuser: str, note: str, sidecar: str) -> str:
    """The pg_hba.conf of a fenced server: the original's lines for replication and ``superuser``.

    First match wins in pg_hba.conf, so the kept lines stay in their order:
    replication lines verbatim, lines that let the superuser in narrowed to
    the superuser (their type, hostssl or hostnossl, address and method kept);
    everything else falls through to ``reject``.
    """
    if '"' in superuser:
        raise StepFailed(f"cannot fence for the role {superuser!r}: a quote in its name")
    one_line = " ".join(note.split())
    out = [f"{FENCE_MARKER} {one_line}", f"# the original is in {sidecar}; unfence restores it"]
    kept = False
    for line in original.splitlines():
        fields = hba_fields(line)
        if len(fields) < 4 or fields[0] not in HBA_TYPES:
            continue  # a comment, a blank or a line this PostgreSQL would not take
        if fields[1] == "replication":  # physical replication only; "replication" quoted is a db
            out.append(line)
        elif names_superuser(fields[2], superuser):
            out.append(" ".join([fields[0], fields[1], f'"{superuser}"', *fields[3:]]))
            kept = True
    if not kept:
        raise StepFailed(
            f"pg_hba.conf has no line that lets {superuser} connect; fencing would lock it out"
        )
    return "\n".join([*out, "host all all all reject", "local all all reject", ""])
