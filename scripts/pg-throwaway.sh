#!/usr/bin/env bash
# pg-throwaway.sh - a disposable PostgreSQL server for tests, demos and benchmarks.
#
#   eval "$(scripts/pg-throwaway.sh start DIR)"   # prints export lines
#   scripts/pg-throwaway.sh restart DIR           # fast shutdown, then start again
#   scripts/pg-throwaway.sh stop DIR
#
# start: initdb into DIR/data (a fresh directory), listen on 127.0.0.1 on a free
# port and on a Unix socket in DIR, trust auth for the local user "pgspout"
# (superuser) and SCRAM for 127.0.0.1 users created by tests. Works as root (the
# server runs as the "postgres" user) and as a normal user. Prints
#   export PGHOST=... PGPORT=... PGUSER=pgspout PGDATABASE=pgspout
#   export PGSPOUT_TEST_DSN='host=... port=... user=pgspout dbname=pgspout'
# Extra postgresql.conf lines may come in PGSPOUT_PG_CONF.
set -euo pipefail

bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && bindir=$d; done
[ -n "$bindir" ] || { echo "pg-throwaway: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then echo "usage: $0 start|restart|stop DIR" >&2; exit 2; fi

case "$cmd" in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/data" ] && { echo "pg-throwaway: $dir/data exists; stop it first" >&2; exit 1; }
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 755 "$dir"; fi
  as_server "$bindir/initdb" -D "$dir/data" -U pgspout -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_connections = 200
password_encryption = 'scram-sha-256'
${PGSPOUT_PG_CONF:-}
CONF
  # trust for the superuser; SCRAM for every other TCP user (tests create them)
  cat >"$dir/data/pg_hba.conf" <<HBA
local all pgspout trust
host  all pgspout 127.0.0.1/32 trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
HBA
  # Another process may take the free port before the server binds it (test
  # suites start servers in parallel): then pick another port and retry.
  started=0
  for _ in 1 2 3 4 5; do
    if as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
      started=1
      break
    fi
    grep -q 'could not bind\|could not create any TCP/IP sockets' "$dir/server.log" 2>/dev/null || break
    port=$(free_port)
    echo "port = $port" >>"$dir/data/postgresql.conf"
  done
  [ "$started" = 1 ] || { cat "$dir/server.log" >&2; exit 1; }
  PGHOST=$dir PGPORT=$port "$bindir/psql" -X -q -U pgspout -d postgres -c "CREATE DATABASE pgspout" >/dev/null
  echo "$port" >"$dir/port"
  echo "export PGHOST='$dir' PGPORT=$port PGUSER=pgspout PGDATABASE=pgspout"
  echo "export PGSPOUT_TEST_DSN='host=127.0.0.1 port=$port user=pgspout dbname=pgspout'"
  ;;
restart)
  # A fast shutdown (every backend terminated, its clients see the
  # connection end) and a start on the same port and socket directory.
  dir=$(cd "$dir" && pwd)
  [ -d "$dir/data" ] || { echo "pg-throwaway: no server in $dir" >&2; exit 1; }
  as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; exit 1; }
  ;;
stop)
  if [ ! -d "$dir/data" ]; then
    # never started (or initdb failed): remove our leftovers, nothing else
    rm -f "$dir/initdb.log" "$dir/server.log" "$dir/port"
    rmdir "$dir" 2>/dev/null || true
    exit 0
  fi
  as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|restart|stop DIR" >&2; exit 2 ;;
esac
