#!/usr/bin/env bash
# A PostgreSQL server on 127.0.0.1 for the tests of several launchers on one study, and for trying
# `sweep launch --storage postgresql://...` on one machine. Debian/Ubuntu, as root, no systemd needed.
#
#   scripts/postgres-dev.sh start    install Debian's postgresql when missing, start its cluster, make
#                                    the role `sweep` (may create databases) and its database `sweep`;
#                                    prints the URL; a no-op (but the URL) when it already runs
#   scripts/postgres-dev.sh url      print the URL: postgresql://sweep:sweep@127.0.0.1:PORT/sweep
#   scripts/postgres-dev.sh stop     stop the cluster
#   scripts/postgres-dev.sh restart  restart it, ending every connection (tests of a database outage)
#
# The driver is the `postgres` extra of the project: `pip install -e ".[postgres]"` (psycopg 3).
set -euo pipefail

PORT=${SWEEP_PG_PORT:-5432}
ROLE=sweep
PASSWORD=sweep   # a test server on loopback only; never reuse for a real one

log() { echo "postgres-dev: $*" >&2; }
die() { echo "postgres-dev: error: $*" >&2; exit 1; }

cluster() {  # the newest cluster's "VERSION NAME", or nothing
  command -v pg_lsclusters >/dev/null || return 0
  pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | sort -V | tail -1
}

install() {
  [ -n "$(cluster)" ] && return 0
  command -v apt-get >/dev/null || die "no PostgreSQL cluster and no apt-get to install one"
  [ "$(id -u)" -eq 0 ] || die "no PostgreSQL cluster; run as root to install Debian's postgresql"
  log "installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  [ -n "$(cluster)" ] || pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -1)" main >&2
}

url() { echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$ROLE"; }

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }

start() {
  install
  read -r version name <<<"$(cluster)"
  if ! pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1 == v && $2 == n {print $4}' | grep -q online; then
    log "starting cluster $version/$name on port $PORT"
    # stdout is the URL alone: pg_ctlcluster's own lines (such as "Removed stale pid file.") go to stderr
    pg_ctlcluster "$version" "$name" start >&2
  fi
  for _ in $(seq 100); do psql_admin -c "select 1" >/dev/null 2>&1 && break; sleep 0.1; done
  psql_admin -c "select 1" >/dev/null || die "the server does not answer; see /var/log/postgresql/"
  if [ -z "$(psql_admin -c "select 1 from pg_roles where rolname = '$ROLE'")" ]; then
    psql_admin -c "create role $ROLE login createdb password '$PASSWORD'" >&2
  fi
  # The tests drop their databases WITH (FORCE), which terminates every other session on them: an
  # autovacuum worker's too (a session of no role), which only a member of pg_signal_backend may end. A
  # test's teardown once failed on it ("must be a member of the role whose process is being terminated").
  if [ -z "$(psql_admin -c "select 1 from pg_auth_members m join pg_roles r on r.oid = m.member
              join pg_roles g on g.oid = m.roleid where r.rolname = '$ROLE' and g.rolname = 'pg_signal_backend'")" ]; then
    psql_admin -c "grant pg_signal_backend to $ROLE" >&2
  fi
  if [ -z "$(psql_admin -c "select 1 from pg_database where datname = '$ROLE'")" ]; then
    psql_admin -c "create database $ROLE owner $ROLE" >&2
  fi
  url
}

stop() {
  read -r version name <<<"$(cluster)"
  [ -n "${version:-}" ] && pg_ctlcluster "$version" "$name" stop || true
}

restart() {  # fast: every client connection is ended, as a failover or a maintenance restart would
  read -r version name <<<"$(cluster)"
  [ -n "${version:-}" ] || die "no PostgreSQL cluster; start one first"
  pg_ctlcluster "$version" "$name" restart -m fast >&2
  for _ in $(seq 100); do psql_admin -c "select 1" >/dev/null 2>&1 && break; sleep 0.1; done
}

case "${1:-}" in
  start) start ;;
  url) url ;;
  stop) stop ;;
  restart) restart ;;
  *) die "usage: $0 start|url|stop|restart" ;;
esac
