# Sourced by .ci/run: a throwaway PostgreSQL server on a loopback port, for the suite's second pass.
# Defines start_postgres (sets TEST_DATABASE_URL) and stop_postgres. PgBouncer is installed too:
# tests/test_postgres_options.py starts one in transaction pooling mode in front of this server.

start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ] || [ ! -x /usr/sbin/pgbouncer ]; then
        echo "+ apt-get install postgresql pgbouncer"  # Debian's packages, about 20 s
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql pgbouncer >/dev/null
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    PG_DIR=$(mktemp -d /tmp/switchboard-pg.XXXXXX)
    local as=()
    if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
        chown postgres "$PG_DIR"
        as=(runuser -u postgres --)
    fi
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -s start \
        -o "-h 127.0.0.1 -p $port -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    PG_CTL=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data")
    export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "+ PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_CTL[@]}" -m immediate -s stop || true
        rm -rf "$PG_DIR"
    fi
}
