#!/usr/bin/env bash
# Idempotent setup: the Debian servers the lab and tests need, the venv, the package.
# As root, missing Debian packages are installed; otherwise the exact command is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || need+=(bind9)
pg_ok=no
for bin in /usr/lib/postgresql/*/bin; do
  v=$(basename "$(dirname "$bin")")
  if [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge 15 ] && [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ]; then
    pg_ok=yes
  fi
done
[ "$pg_ok" = yes ] || need+=(postgresql)
# The controllers' shared state and their leader election: etcd, a member at each lab site.
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
# The databases' backups: pgBackRest, into each site's S3 store (behind TLS).
command -v pgbackrest >/dev/null 2>&1 || [ -x /usr/bin/pgbackrest ] || need+=(pgbackrest)
# The runbooks' manual steps (and the test that runs them): nsupdate and dig, and jq.
command -v nsupdate >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v jq >/dev/null 2>&1 || need+=(jq)
# The mailbox tests run a private dovecot (IMAP) on loopback.
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
# The partition drill cuts a site off with nftables, which only root may use:
# as root it is installed with the rest; otherwise it is only mentioned.
if ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ]; then
  if [ "$(id -u)" -eq 0 ]; then
    need+=(nftables)
  else
    echo "setup: the partition drill needs root and nftables: sudo apt-get install -y nftables" >&2
  fi
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
    # The package may start a system etcd (on systemd hosts): the lab runs its own members.
    if [[ " ${need[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing Debian packages: ${need[*]}; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.failover-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing failover and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,stacks]'
  touch "$stamp"
fi
# cloud-init's own schema, for the stacks' user-data check (tests/stacks/test_cloudinit.py):
# taken from Debian's package without installing it (it would pull in sudo, a DHCP
# client and some thirty more). Best effort: without it that one check is skipped.
schema=.venv/share/cloud-init/schema-cloud-config-v1.json
if [ ! -f "$schema" ] && command -v apt-get >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download -qq cloud-init >/dev/null 2>&1) \
      && dpkg-deb -x "$tmp"/cloud-init_*.deb "$tmp/root" 2>/dev/null; then
    mkdir -p "$(dirname "$schema")"
    cp "$tmp"/root/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json "$schema"
    echo "setup: cloud-init's schema in $schema"
  else
    echo "setup: cloud-init's schema not found (apt-get download cloud-init failed): its check is skipped" >&2
  fi
  rm -rf "$tmp"
fi
