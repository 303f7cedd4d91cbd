#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for `hilreward serve store=postgresql://...`: no docker, no system
# service, just Debian's postgresql binaries with data, log and unix socket in one folder.
#   bash scripts/postgres.sh start DIR [PORT]   start it (initdb on first use); prints the store URL
#                                               (with PORT it also listens on 127.0.0.1:PORT)
#   bash scripts/postgres.sh stop DIR           stop it; rm -rf DIR drops everything
# Authentication is `trust` (anyone on this machine may connect): for trying out and tests only.
# As root (initdb refuses to run as root) the server runs as the `postgres` user the package creates.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$bin" ] || bin=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
if [ ! -x "$bin/initdb" ]; then
  echo "no PostgreSQL server binaries (initdb) found: install Debian's postgresql (bash scripts/sysdeps.sh --with-browser)" >&2
  exit 3
fi
as=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    echo "running as root and there is no 'postgres' user to run the server as (initdb refuses root)" >&2
    exit 3
  fi
  as=(runuser -u postgres --)
fi
if [ ${#as[@]} -gt 0 ] && ! "${as[@]}" test -x "$(dirname "$(realpath -m "$dir")")"; then
  echo "the postgres user cannot enter $(dirname "$(realpath -m "$dir")") (a private folder); choose DIR under /tmp" >&2
  exit 3
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cd "$dir"  # the server user must be able to enter the working directory
case $cmd in
  start)
    port=${3:-5432}
    listen=""
    [ -z "${3:-}" ] || listen=127.0.0.1
    [ ${#as[@]} -eq 0 ] || chown postgres: "$dir"
    if [ ! -f data/PG_VERSION ]; then
      "${as[@]}" "$bin/initdb" -D data -U hilreward -A trust -E UTF8 --no-sync >initdb.log 2>&1 \
        || { echo "initdb failed: $(tail -n 3 initdb.log)" >&2; exit 1; }
    fi
    if ! "${as[@]}" "$bin/pg_ctl" -D data status >/dev/null 2>&1; then  # started already: reuse it
      "${as[@]}" "$bin/pg_ctl" -D data -l server.log -w -t 60 -o "-c listen_addresses='$listen' -k '$dir' -p $port" \
        start >/dev/null || { echo "pg_ctl start failed: $(tail -n 3 server.log)" >&2; exit 1; }
    fi
    if ! "${as[@]}" "$bin/psql" -h "$dir" -p "$port" -U hilreward -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'hilreward'" | grep -q 1; then
      "${as[@]}" "$bin/createdb" -h "$dir" -p "$port" -U hilreward hilreward
    fi
    echo "postgresql://hilreward@/hilreward?host=$dir&port=$port"
    ;;
  stop)
    [ ! -f data/postmaster.pid ] || "${as[@]}" "$bin/pg_ctl" -D data -m fast -w stop >/dev/null
    ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
