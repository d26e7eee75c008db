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
# The databases' backups: pgBackRest, into each site's S3 store (behind TLS).
command -v pgbackrest >/dev/null 2>&1 || [ -x /usr/bin/pgbackrest ] || need+=(pgbackrest)
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
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
