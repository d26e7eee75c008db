"""The words and commands of the steps that act on PostgreSQL, keyed by action name."""

from __future__ import annotations

from failover.engine.plan import Step
from failover.runbooks import sql
from failover.runbooks.model import Block, Check, Move, StepText
from failover.runbooks.shell import Shell

RECOVERY = "SELECT pg_is_in_recovery()"
RECEIVER = "SELECT pg_is_in_recovery(), status, sender_host FROM pg_stat_wal_receiver"


def _replication(sh: Shell, primary: str) -> str:
    return sh.psql(primary, "SELECT application_name, state, sync_state, "
                   "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication")


def _streams(sh: Shell, primary: str, standby: str) -> list[Check]:
    name = sh.deployment.application_name(standby)
    host = sh.site(primary).database.host
    return [
        Check(_replication(sh, primary), f"a row `{name}|streaming|...|N`: N is how many bytes "
              f"{standby} has yet to replay (small)"),
        Check(sh.psql(standby, RECEIVER), f"`t|streaming|{host}`"),
    ]


def _check_switchover(sh: Shell, step: Step, move: Move) -> list[Check]:
    source, target = step.params["from"], step.params["to"]
    return [Check(sh.psql(source, RECOVERY), f"`f`: {source} is a primary"),
            Check(sh.psql(source, sql.FENCED), f"not `# failover fence:` ({source} takes "
                  "writes)"),
            *_streams(sh, source, target),
            Check(sh.readyz(target), f'HTTP 200 and `"role":"standby"` ({target}\'s app)')]


def _check_emergency(sh: Shell, step: Step, move: Move) -> list[Check]:
    target = step.params["to"]
    others = [s for s in sh.config.sites if s != target]
    return [Check(sh.psql(target, RECEIVER), f"`t||` or `t|waiting|...`: {target} is a standby "
                  "that streams from no one (a `streaming` row: its primary is alive; use the "
                  "planned switchover)"),
            *[Check(sh.psql(o, RECOVERY), f"an error (`{o}` does not answer) or `t`; never `f`")
              for o in others],
            Check(sh.readyz(target), "HTTP 200 (the app answers; as a standby's, it is not "
                  "writable)")]


def _check_rejoin(sh: Shell, step: Step, move: Move) -> list[Check]:
    primary = step.params["primary"]
    return [Check(sh.psql(primary, RECOVERY), f"`f`: {primary} is the primary")]


def _check_rpo(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check(sh.psql(step.params["site"], "SELECT pg_last_wal_receive_lsn(), "
                  "pg_last_wal_replay_lsn()"), "two LSNs, equal once it replayed all it "
                  "received (the receive LSN is empty when it never streamed)")]


def _check_result(sh: Shell, step: Step, move: Move) -> list[Check]:
    from failover.runbooks.dnscommands import look

    primary = step.params["primary"]
    out = [Check(sh.psql(primary, RECOVERY), f"`f`: {primary} is a primary")]
    for standby in step.params["standbys"]:
        out += _streams(sh, primary, standby)
    return out + look(sh, sh.records(primary, step.params["ttl"]))


def _synchronous_replication(sh: Shell, step: Step, move: Move) -> list[Check]:
    primary, standby = step.params["primary"], step.params["standby"]
    name = sh.deployment.application_name(standby)
    return [Check(sh.psql(primary, "SELECT application_name, sync_state FROM "
                          "pg_stat_replication"), f"`{name}|sync`"),
            Check(sh.psql(primary, "SHOW synchronous_commit"), "`remote_apply`")]


def _make_synchronous(sh: Shell, step: Step, move: Move) -> list[Block]:
    primary, standby = step.params["primary"], step.params["standby"]
    name = sh.deployment.application_name(standby)
    return [Block(sh.psql_script(primary, sql.synchronous(name))),
            Block(sh.wait_sql(primary, "SELECT sync_state FROM pg_stat_replication WHERE "
                              f"application_name = '{name}'", "sync"),
                  f"Wait until {primary} reports {standby} as its synchronous standby:")]


def _undo_synchronous(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block(sh.psql_script(step.params["primary"], sql.ASYNCHRONOUS),
                  "To let commits stop waiting for the standby (after an abandoned move):")]


def _fenced(sh: Shell, step: Step, move: Move) -> list[Check]:
    site = step.params["site"]
    return [Check(sh.psql(site, sql.FENCED), "`# failover fence:`"),
            Check(sh.psql(site, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                          "'client backend' AND pid <> pg_backend_pid()"), "`0`"),
            Check(sh.readyz(site), '`"writable":false` (or HTTP 503): the app takes no writes')]


def _fence(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    superuser = sh.site(site).database.user
    note = f"by hand, {move.name} to {move.to_site}"
    when = (f"If {site} does not answer, it cannot be fenced from here: stop it on its host "
            f"({sh.host(site).where}) or cut it off, and go on. " if step.params["best_effort"]
            else "")
    return [Block(sh.psql_script(site, sql.fence(superuser, note)),
                  f"{when}As {superuser}, at {site} (the fence lets {superuser} and replication "
                  "in; it prints the fenced LSN last):")]


def _unfence(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block(sh.psql_script(step.params["site"], sql.UNFENCE),
                  "To undo the fence (only while no other site is the primary: two primaries "
                  "lose writes):")]


def _caught_up(sh: Shell, step: Step, move: Move) -> list[Check]:
    site = step.params["site"]
    return [Check(sh.psql(site, "SELECT pg_last_wal_replay_lsn()"), "an LSN at or past the "
                  f"fenced LSN that the fence printed at {move.from_site}")]


def _catch_up(sh: Shell, step: Step, move: Move) -> list[Block]:
    site, source = step.params["site"], move.from_site
    mark = sh.psql(source, "SELECT pg_create_restore_point('failover-catch-up')")
    return [Block("\n".join([
        f"LSN=$({mark})",
        sh.wait_sql(site, "SELECT pg_last_wal_replay_lsn() >= '$LSN'::pg_lsn", "t")]),
        f"Mark the end of {source}'s WAL now, and wait until {site} has replayed it:")]


def _promoted(sh: Shell, step: Step, move: Move) -> list[Check]:
    site = step.params["site"]
    return [Check(sh.psql(site, RECOVERY), f"`f`: {site} is a primary"),
            Check(sh.psql(site, "SELECT timeline_id FROM pg_control_checkpoint()"),
                  "a timeline one higher than before (after its first checkpoint)")]


def _promote(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    others = [s for s in sh.config.sites if s != site]
    return [Block(sh.psql_script(site, sql.promote(int(step.timeout))),
                  f"Only once {' and '.join(others)} take no writes (fenced, stopped or gone); "
                  "the last line answers `t` when it is promoted:")]


def _rejoined(sh: Shell, step: Step, move: Move) -> list[Check]:
    return _streams(sh, step.params["primary"], step.params["site"])


def _password(host_passfile: str, user: str) -> str:
    return f"export PGPASSWORD=\"$(awk -F: '$4 == \"{user}\" {{print $5; exit}}' {host_passfile})\""


def _rejoin(sh: Shell, step: Step, move: Move) -> list[Block]:
    site, primary = step.params["site"], step.params["primary"]
    h, db = sh.host(site), sh.site(primary).database
    name = sh.deployment.application_name(site)
    own = '"$PGDATA/../pg_hba.conf.before-rejoin"'
    conninfo = f"host={db.host} port={db.port} user={h.superuser} dbname=postgres"
    standby_settings = "|".join(("primary_conninfo", "synchronous_standby_names",
                                 "synchronous_commit"))
    on_host = [
        f"# On {site}'s host: {h.where}", *h.setup(), *h.hold,
        "# this site's own pg_hba.conf (the fence's original), since pg_rewind copies the "
        "primary's",
        "if head -n 1 \"$PGDATA/pg_hba.conf\" | grep -q '^# failover fence:'; then "
        f'cp -p "$PGDATA/pg_hba.conf.failover-unfenced" {own}; '
        f'else cp -p "$PGDATA/pg_hba.conf" {own}; fi',
        _password(h.passfile, h.superuser),
        f'runuser -u {h.os_user} -w PGPASSWORD -- "$PGBIN/pg_rewind" --target-pgdata="$PGDATA" '
        f'--source-server="{conninfo}"',
        f'cp -p {own} "$PGDATA/pg_hba.conf"',
        'rm -f "$PGDATA/pg_hba.conf.failover-unfenced"',
        f"runuser -u {h.os_user} -- sed -i -E '/^[[:space:]]*({standby_settings})[[:space:]]*=/d'"
        ' "$PGDATA/postgresql.auto.conf"',
        _password(h.passfile, h.replication_user),
        f"printf \"primary_conninfo = 'host={db.host} port={db.port} user={h.replication_user} "
        f"password=%s application_name={name}'\\n\" \"$PGPASSWORD\" >> "
        '"$PGDATA/postgresql.auto.conf"',
        "unset PGPASSWORD",
        f'runuser -u {h.os_user} -- touch "$PGDATA/standby.signal"', *h.release]
    return [
        Block(sh.psql(primary, "CHECKPOINT"), f"At {primary} first (pg_rewind reads the new "
              "timeline from its control file, which a checkpoint writes):"),
        Block("\n".join(on_host), f"Then on {site}'s host: stop its server, rewind it to "
              f"follow {primary}, make it a standby, hand it back to its agent:"),
        Block(sh.wait_sql(site, "SELECT status FROM pg_stat_wal_receiver", "streaming"),
              f"Then wait until {site} streams:")]


def _rebuild_standby(sh: Shell, step: Step, move: Move) -> list[Block]:
    site, primary = step.params["site"], step.params["primary"]
    h, db = sh.host(site), sh.site(primary).database
    return [Block("\n".join([
        f"# On {site}'s host: {h.where}", *h.setup(), *h.hold,
        'mv "$PGDATA" "$PGDATA.before-rebuild"', _password(h.passfile, h.replication_user),
        f'runuser -u {h.os_user} -w PGPASSWORD -- "$PGBIN/pg_basebackup" -h {db.host} '
        f'-p {db.port} -U {h.replication_user} -D "$PGDATA" -R -X stream -c fast',
        "unset PGPASSWORD", *h.release]),
        "When pg_rewind cannot (it says why), copy a fresh base backup instead; remove "
        "$PGDATA.before-rebuild once the standby streams:")]


def _await_lease(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block(f"sleep {sh.config.watch.lease_seconds:g}",
                  "Only if a controller held leases and stopped renewing them less than "
                  "watch.lease_seconds ago (with no controller there is nothing to wait for):")]


def _replayed(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    return [Block(sh.wait_sql(site, "SELECT pg_last_wal_replay_lsn() >= "
                              "pg_last_wal_receive_lsn()", "t"),
                  f"Let {site} replay what it received (Ctrl-C after a few seconds if it "
                  "never gets there: a record cut off mid-stream is never replayed):")]


DB: dict[str, StepText] = {
    "check_switchover": StepText(
        "Makes sure the move can lose nothing: {from} is the only primary and takes writes, "
        "{to} is a standby streaming from it at most {max_lag_bytes} bytes behind, and {to}'s "
        "app says it is ready. Asked again when the step runs, not only when planning: the "
        "world may have changed since the plan was printed.",
        "Nothing has changed yet. Fix what the check names (a standby far behind: wait for "
        "it; an app not ready: its log), then run the same command again.",
        _check_switchover),
    "check_emergency": StepText(
        "Makes sure an emergency promote is what is needed: no site answers as a primary, and "
        "{to} is a standby that no longer streams from one (a standby that still streams has "
        "a live primary: that is a planned switchover).",
        "Nothing has changed yet. If a primary answers after all, use the planned switchover.",
        _check_emergency),
    "check_rejoin": StepText(
        "Makes sure {primary} is the primary that {site} will follow.",
        "Nothing has changed yet. With no primary, promote one first (emergency-promote.md).",
        _check_rejoin),
    "check_rpo": StepText(
        "Lets {site} replay all it received, and records how far it got: what the old primary "
        "acknowledged beyond that is lost (nothing, when replication was synchronous).",
        "Nothing has changed. A standby that cannot replay its last record (cut off "
        "mid-stream) is promoted anyway: promotion replays all that can be.",
        _check_rpo, _replayed),
    "check_result": StepText(
        "Confirms the outcome: {primary} is the only primary, each standby streams from it, "
        "and every DNS provider answers {primary}'s address with TTL {ttl} s. A provider that "
        "does not is a warning (exit 3), not a failure. `failover status` shows it all at "
        "once.",
        "Run the check again after a few seconds (a standby that has just started connects "
        "in a moment). A provider that answers the old address: repeat the switch_dns step "
        "for it by hand. Then `failover abandon RUN` if the run is to be left as it is.",
        _check_result),
    "synchronous_replication": StepText(
        "Makes every commit at {primary} wait until {standby} has applied it "
        "(synchronous_commit = remote_apply): from here on no acknowledged write is missing "
        "at {standby}, so the move loses none.",
        "Writes at {primary} now wait for {standby}: if {standby} stops streaming, they "
        "hang. Find out why it does not report `sync` (is it streaming? is its "
        "application_name what synchronous_standby_names says?).",
        _synchronous_replication, _make_synchronous, _undo_synchronous),
    "fence": StepText(
        "Makes {site} refuse every connection but replication and the engine's superuser, and "
        "ends every session that came in before: from here on it takes no writes, yet its "
        "standby still receives all it wrote. A read-only setting would be no fence: any "
        "session may turn it off.",
        "A fence that stopped half-way is finished by running it again. It refuses to lock "
        "out the superuser (no pg_hba.conf line lets it in) and puts the original back when "
        "the fenced file would not load.",
        _fenced, _fence, _unfence),
    "await_lease": StepText(
        "Unless {site} was fenced, waits until its lease has lapsed: its agent fences it the "
        "moment it does, so after this {site} takes no writes whether it answers or not.",
        "The lease ends after this step's deadline: run the command again once it has.",
        lambda sh, step, move: [], _await_lease),
    "catch_up": StepText(
        "Waits until {site} has replayed everything the fenced primary wrote, up to the fence's "
        "LSN: then promoting it loses nothing.",
        "{site} does not replay: is it streaming (`failover status`)? Nothing is lost while "
        "the primary stays fenced; to give the move up, unfence the old primary (see the "
        "fence step).",
        _caught_up, _catch_up),
    "promote": StepText(
        "Promotes {site}: it leaves recovery on a new timeline and takes writes. Commits are "
        "made asynchronous first: it has no standby of its own yet, and a synchronous setting "
        "copied from its old primary would make every commit wait for ever. The tool checks "
        "first that no other site answers as an unfenced primary, and clears a lease {site} "
        "may keep from its days as a primary.",
        "If it answers `f` to pg_promote, it is still promoting: check again. If another site "
        "answers as an unfenced primary, fence it first: two primaries lose writes.",
        _promoted, _promote),
    "rejoin": StepText(
        "Makes {site}, the old primary, a streaming standby of {primary}: its server is "
        "stopped, rewound to where the two histories forked (pg_rewind; a fresh base backup "
        "when that cannot work), set up to stream from {primary} and started again, with its "
        "own pg_hba.conf back.",
        "{site} stays fenced or stopped meanwhile: no writes are lost by waiting.",
        _rejoined, _rejoin, _rebuild_standby),
}
