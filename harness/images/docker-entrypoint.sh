#!/bin/sh
# Entrypoint of the ahsp-perf service images built from Debian packages by
# `cargo xtask images`. It honours the contract of the public images the harness
# uses by default, so one code path serves both:
#   postgres      like docker.io/library/postgres: POSTGRES_USER, POSTGRES_PASSWORD,
#                 POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, PGDATA;
#                 initialises an empty data directory, then runs as user postgres
#   pgbouncer     like edoburu/pgbouncer: runs the given command as user postgres
#   redis-server  like docker.io/library/redis: runs as user redis
# Arguments that start with '-' are given to the image's default server.
set -eu

default_server=${AHSP_PERF_DEFAULT_SERVER:-postgres}
case "${1:-}" in
    -*|"") set -- "$default_server" "$@" ;;
esac

drop_to() {
    user=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid="$user" --regid="$user" --init-groups "$0" "$@"
    fi
}

init_postgres() {
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        echo "error: database is uninitialized and superuser password is not specified" >&2
        echo "  set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="$POSTGRES_HOST_AUTH_METHOD" --no-instructions ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    rm -f "$pwfile"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # A temporary server on the Unix socket only, as the official image does.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
        psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
}

case "$1" in
    postgres)
        : "${PGDATA:=/var/lib/postgresql/data}"
        export PGDATA
        if [ "$(id -u)" = 0 ]; then
            mkdir -p "$PGDATA" /var/run/postgresql
            chown -R postgres:postgres "$PGDATA" /var/run/postgresql
            chmod 700 "$PGDATA"
        fi
        drop_to postgres "$@"
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
            init_postgres
        fi
        ;;
    pgbouncer)
        drop_to postgres "$@"
        ;;
    redis-server)
        if [ "$(id -u)" = 0 ]; then
            mkdir -p /data
            chown redis:redis /data
        fi
        drop_to redis "$@"
        cd /data
        ;;
esac
exec "$@"
