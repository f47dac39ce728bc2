#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests, benchmarks and the local stack.
#   deploy/pg-cluster.sh start DIR PORT   initdb (if needed) and start; prints the admin DATABASE_URL
#   deploy/pg-cluster.sh stop DIR
# Runs the server as the `postgres` user when started as root (PostgreSQL refuses to run as root).
# Durable settings (fsync=on, synchronous_commit=on) as in production; sized for a 2-core machine.
set -euo pipefail
cmd=${1:?usage: pg-cluster.sh start|stop DIR [PORT]}
dir=${2:?data directory}
port=${3:-54329}
bindir=$(pg_config --bindir 2>/dev/null || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -x "$bindir/initdb" ] || { echo "pg-cluster: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
user=$( [ "$(id -u)" = 0 ] && echo postgres || id -un )

case "$cmd" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_pg "$bindir/initdb" -D "$dir" -U "$user" --auth=trust -E UTF8 --locale=C >/dev/null
    cat >> "$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 512MB
fsync = on
synchronous_commit = on
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 15min
max_wal_size = 4GB
log_min_messages = warning
CONF
  fi
  # -p on the command line: the port given now wins over the one written at initdb time.
  as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null
  echo "postgres://$user@127.0.0.1:$port/postgres"
  ;;
stop)
  [ -f "$dir/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
  ;;
restart)
  as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w -t 60 restart -l "$dir/server.log" >/dev/null
  ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
