"""The fenced pg_hba.conf, as text: no server needed."""

from __future__ import annotations

import pytest

from failover.data.hba import fenced_hba, hba_fields, is_fence, names_superuser
from failover.exceptions import StepFailed


def test_fenced_hba_keeps_replication_and_the_superuser_only() -> None:
    original = (
        "# comment\twith a tab\n"
        "local   all          all                        peer\n"
        "hostssl all          postgres,app  10.0.0.0/8   scram-sha-256\n"
        "host    social       app           10.0.0.0/8   scram-sha-256\n"
        'host    all          "all"         10.0.0.0/8   trust\n'
        'host    all          "app"         10.0.0.0/8   trust\n'
        'host    "replication" all          10.0.0.0/8   trust\n'
        "host    replication  replicator    10.0.0.0/8   scram-sha-256  # standbys\n"
        "hostnossl sameuser   all           10.0.0.0 255.0.0.0 md5\n"
    )
    fenced = fenced_hba(original, "postgres", "for\na drill", "/x/pg_hba.conf.failover-unfenced")
    assert fenced.splitlines() == [
        "# failover fence: for a drill",
        "# the original is in /x/pg_hba.conf.failover-unfenced; unfence restores it",
        'local all "postgres" peer',
        'hostssl all "postgres" 10.0.0.0/8 scram-sha-256',
        'host "replication" "postgres" 10.0.0.0/8 trust',
        "host    replication  replicator    10.0.0.0/8   scram-sha-256  # standbys",
        'hostnossl sameuser "postgres" 10.0.0.0 255.0.0.0 md5',
        "host all all all reject",
        "local all all reject",
    ]
    assert is_fence(fenced)
    assert not is_fence(original)


def test_fenced_hba_skips_what_postgres_would_not_take() -> None:
    original = (
        "include_dir conf.d\n"  # not a rule: not kept
        "host all postgres\n"  # too short to be a rule
        "hostgssenc all postgres 10.0.0.0/8 gss\n"
    )
    assert fenced_hba(original, "postgres", "x", "/x").splitlines()[2:] == [
        'hostgssenc all "postgres" 10.0.0.0/8 gss',
        "host all all all reject",
        "local all all reject",
    ]


def test_fenced_hba_refuses_to_lock_the_superuser_out() -> None:
    with pytest.raises(StepFailed, match="no line that lets postgres connect"):
        fenced_hba("host all app 10.0.0.0/8 md5\n", "postgres", "x", "/x")
    with pytest.raises(StepFailed, match="no line that lets postgres connect"):
        fenced_hba('host all "all" 10.0.0.0/8 md5\n', "postgres", "x", "/x")  # a role named all


def test_fenced_hba_refuses_a_superuser_with_a_quote_in_its_name() -> None:
    with pytest.raises(StepFailed, match="a quote in its name"):
        fenced_hba("host all all 10.0.0.0/8 md5\n", 'post"gres', "x", "/x")


def test_hba_fields_keep_quotes_and_drop_the_comment() -> None:
    assert hba_fields('host  "my db"  "a # b",c  10.0.0.0/8  md5  # a comment') == [
        "host", '"my db"', '"a # b",c', "10.0.0.0/8", "md5"]
    assert hba_fields("   # only a comment") == []
    assert hba_fields("") == []


@pytest.mark.parametrize(("field", "lets_in"), [
    ("all", True),
    ('"all"', False),  # a role that happens to be named all
    ("postgres", True),
    ('"postgres"', True),
    ('app,"post,gres",postgres', True),
    ('app,"post,gres"', False),
    ("app", False),
    ("+postgres", False),  # a group: not followed, not kept
])
def test_names_superuser(field: str, lets_in: bool) -> None:
    assert names_superuser(field, "postgres") is lets_in
