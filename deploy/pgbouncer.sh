#!/usr/bin/env bash
# A throwaway PgBouncer in transaction pooling mode in front of a PostgreSQL server (tests and bench).
# Usage: bash deploy/pgbouncer.sh start DIR PORT UPSTREAM_HOST UPSTREAM_PORT   daemon; returns once it accepts
#        bash deploy/pgbouncer.sh config DIR PORT UPSTREAM_HOST UPSTREAM_PORT  only writes DIR/pgbouncer.ini and
#             prints the command that runs it in the foreground (tests supervise it as their own child process)
#        bash deploy/pgbouncer.sh stop DIR                                      stops the one started in DIR (its pid)
# Every database name is forwarded to the same name upstream ("* = host=... port=..."), clients are trusted (the
# upstream decides), pool_mode = transaction. Runs as the `postgres` user when started as root (PgBouncer refuses
# to run as root). Settings: PGBOUNCER_POOL_SIZE (20 server connections per database and user).
set -euo pipefail
cmd=${1:?usage: pgbouncer.sh start|stop DIR ...}
dir=${2:?DIR}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start|config)
  port=${3:?PORT}; host=${4:?UPSTREAM_HOST}; upstream=${5:?UPSTREAM_PORT}
  command -v pgbouncer >/dev/null || { echo "pgbouncer.sh: pgbouncer is not installed (apt-get install pgbouncer)" >&2; exit 1; }
  mkdir -p "$dir"
  user=$( [ "$(id -u)" = 0 ] && echo postgres || id -un )
  echo "\"$user\" \"\"" > "$dir/userlist.txt"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=$upstream

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = 1000
max_db_connections = 0
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = $user
INI
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  if [ "$cmd" = config ]; then
    if [ "$(id -u)" = 0 ]; then echo "runuser -u postgres -- pgbouncer $dir/pgbouncer.ini"; else echo "pgbouncer $dir/pgbouncer.ini"; fi
    exit 0
  fi
  # Its output goes to the log file: a daemon holding our stdout would keep a caller reading it waiting.
  as_pg pgbouncer -d -q "$dir/pgbouncer.ini" </dev/null >/dev/null 2>&1
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && exit 0
    sleep 0.1
  done
  echo "pgbouncer.sh: PgBouncer did not start (see $dir/pgbouncer.log)" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/pgbouncer.pid" ]; then
    pid=$(cat "$dir/pgbouncer.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ;;
*) echo "pgbouncer.sh: unknown command $cmd" >&2; exit 2 ;;
esac
