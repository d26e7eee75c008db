"""Static checks of the migration list (the database side is covered by the lab tests)."""

from __future__ import annotations

import re

from infra.refapp import migrations


def test_versions_are_unique_and_increasing() -> None:
    versions = [m.version for m in migrations.MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert versions[-1] == migrations.LATEST_VERSION


def test_statements_are_idempotent_and_use_no_serials() -> None:
    for migration in migrations.MIGRATIONS:
        for statement in migration.statements:
            sql = " ".join(statement.split()).lower()
            if sql.startswith("create"):
                assert "if not exists" in sql, sql
            # Serial ids could be reissued by a promoted standby; ids must be UUIDs.
            assert not re.search(r"\b(big)?serial\b|\bidentity\b|nextval", sql), sql
