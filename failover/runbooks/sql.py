"""The SQL of the manual steps: what ``failover.data`` does, as statements a person can run.

Each script is what the tool's own code does over its connection
(``data.fencing``, ``data.replication``), written for psql: the fence keeps
the same lines of pg_hba.conf as ``data.hba.fenced_hba`` and puts the
original in the same sidecar, so that the tool can later unfence or rejoin
a server fenced by hand, and a person can undo what the tool did.
"""

from __future__ import annotations

from failover.data.fencing import UNFENCED_SUFFIX
from failover.data.hba import FENCE_MARKER, HBA_TYPES


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fence(superuser: str, note: str) -> str:
    """Fence a primary: only replication and ``superuser`` may connect; older sessions end."""
    user = _literal(superuser)
    quoted = _literal(f'"{superuser}"')
    types = ", ".join(_literal(t) for t in sorted(HBA_TYPES))
    header = _literal(f"{FENCE_MARKER} {note}\n")
    return f"""
-- 1. The fence: pg_hba.conf keeps its replication lines, and its lines that let {superuser}
--    in, narrowed to {superuser}; all else is rejected. The original goes beside it first.
DO $fence$
DECLARE
  hba text := current_setting('hba_file');
  original text := pg_read_file(hba);
  kept text;
  lo oid;
BEGIN
  IF original LIKE {_literal(FENCE_MARKER + '%')} THEN
    RAISE NOTICE 'already fenced';
    RETURN;
  END IF;
  SELECT string_agg(CASE WHEN f[2] = 'replication' THEN line
                         ELSE concat_ws(' ', f[1], f[2], {quoted}, array_to_string(f[4:], ' '))
                    END, E'\\n' ORDER BY n)
    INTO kept
    FROM regexp_split_to_table(original, E'\\n') WITH ORDINALITY AS t(line, n),
         LATERAL (SELECT regexp_split_to_array(btrim(regexp_replace(line, '#.*', '')), '\\s+')
                  AS f) fields
   WHERE f[1] IN ({types}) AND cardinality(f) >= 4
     AND (f[2] = 'replication' OR f[3] = 'all' OR {user} = ANY(string_to_array(f[3], ',')));
  IF kept IS NULL OR position({quoted} IN kept) = 0 THEN
    RAISE EXCEPTION 'no line of % lets {superuser} in: fencing would lock it out', hba;
  END IF;
  lo := lo_from_bytea(0, convert_to(original, 'UTF8'));
  PERFORM lo_export(lo, hba || {_literal(UNFENCED_SUFFIX)});
  PERFORM lo_unlink(lo);
  lo := lo_from_bytea(0, convert_to({header} || '# the original is in ' || hba
        || {_literal(UNFENCED_SUFFIX + '; unfence restores it')} || E'\\n' || kept
        || E'\\nhost all all all reject\\nlocal all all reject\\n', 'UTF8'));
  PERFORM lo_export(lo, hba);
  PERFORM lo_unlink(lo);
  IF EXISTS (SELECT FROM pg_hba_file_rules WHERE error IS NOT NULL) THEN
    lo := lo_from_bytea(0, convert_to(original, 'UTF8'));
    PERFORM lo_export(lo, hba);
    PERFORM lo_unlink(lo);
    RAISE EXCEPTION 'the fenced pg_hba.conf would not load: the original is back, not fenced';
  END IF;
END
$fence$;
-- 2. Load it: the postmaster has once this session has (it signals every backend after).
SELECT set_config('failover.before_reload', pg_conf_load_time()::text, false);
SELECT pg_reload_conf();
SELECT pg_sleep(1);
DO $$ BEGIN
  IF pg_conf_load_time() <= current_setting('failover.before_reload')::timestamptz THEN
    RAISE EXCEPTION 'pg_hba.conf is not reloaded yet: run this script again';
  END IF;
END $$;
-- 3. End every session that came in before the fence (they keep the rules they came with).
DO $$ BEGIN
  FOR i IN 1..50 LOOP
    PERFORM pg_stat_clear_snapshot();
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
        AND backend_start < pg_conf_load_time();
    IF NOT FOUND THEN RETURN; END IF;
    PERFORM pg_sleep(0.2);
  END LOOP;
  RAISE EXCEPTION 'sessions from before the fence are still there: run this script again';
END $$;
-- 4. Mark the end of the fenced WAL (forensics: recovery_target_name).
SELECT pg_create_restore_point('failover-fence') AS fenced_lsn;
"""


UNFENCE = f"""
DO $$
DECLARE hba text := current_setting('hba_file'); lo oid;
BEGIN
  lo := lo_from_bytea(0, pg_read_binary_file(hba || {_literal(UNFENCED_SUFFIX)}));
  PERFORM lo_export(lo, hba);
  PERFORM lo_unlink(lo);
END $$;
SELECT pg_reload_conf();
"""


def synchronous(standby: str) -> str:
    """Make commits wait until ``standby`` (its application_name) has applied them."""
    names = 'FIRST 1 ("' + standby.replace('"', '""') + '")'
    return (f"ALTER SYSTEM SET synchronous_standby_names = {_literal(names)};\n"
            "ALTER SYSTEM SET synchronous_commit = 'remote_apply';\n"
            "SELECT pg_reload_conf();")


ASYNCHRONOUS = ("ALTER SYSTEM RESET synchronous_standby_names;\n"
                "ALTER SYSTEM RESET synchronous_commit;\n"
                "SELECT pg_reload_conf();")


def promote(wait_seconds: int) -> str:
    """Promote a standby, commits asynchronous first (it has no standby of its own yet)."""
    return f"{ASYNCHRONOUS}\nSELECT pg_promote(true, {wait_seconds});"


FENCED = ("SELECT left(pg_read_file(current_setting('hba_file')), "
          f"{len(FENCE_MARKER)})")
