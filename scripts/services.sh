#!/usr/bin/env bash
# Start the local services the test suite needs, if they are not running yet.
#
#   scripts/services.sh [--env-file FILE] [SERVICE...]
#
# SERVICE is any of: mariadb docker registry chromedriver all (default: mariadb).
# Every service is started only when it is not already up, so the script can be
# run any number of times. Nothing is ever stopped.
#
# Progress goes to stderr; stdout carries only `export NAME=value` lines for the
# services that are up, so a caller can do:
#
#   env_out=$(scripts/services.sh mariadb) && eval "$env_out"
#
# --env-file FILE also writes those lines to FILE (for `source FILE` later).
#
# A service whose program is not installed is reported and skipped: the tests
# that need it then skip themselves. Under CI=true a missing program is an
# error (exit 1), so CI cannot pass with those tests silently skipped.
#
# Exported variables:
#   mariadb       TEST_MYSQL_URL=mysql://rollbridge:rollbridge@127.0.0.1:3306/rollbridge_test
#   docker        TEST_DOCKER=1            (daemon on unix:///var/run/docker.sock)
#   registry      TEST_REGISTRY=127.0.0.1:5000
#   chromedriver  TEST_WEBDRIVER_URL=http://127.0.0.1:9515
set -euo pipefail

RUN_DIR="${TMPDIR:-/tmp}"
WAIT_SECONDS=30

MYSQL_DB=rollbridge_test
MYSQL_USER=rollbridge
MYSQL_PASSWORD=rollbridge
MYSQL_HOST=127.0.0.1
MYSQL_PORT=3306

REGISTRY_ADDR=127.0.0.1:5000
CHROMEDRIVER_PORT=9515

EXPORTS=()
FAILED=0

log() { printf 'services: %s\n' "$*" >&2; }

# Record one variable for the caller.
export_var() { EXPORTS+=("$(printf 'export %s=%q' "$1" "$2")"); }

# A service cannot be started. Locally that only means its tests skip; under
# CI it fails the run (reported at the end, after the other services ran).
unavailable() {
    log "$*"
    if [[ "${CI:-}" == "true" ]]; then
        log "CI=true: this service is required, failing."
        FAILED=1
    else
        log "the tests that need it will be skipped."
    fi
}

# wait_for SECONDS CMD...: run CMD every half second until it succeeds.
wait_for() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# Run a long-lived program in the background, detached from this script's
# terminal and stdout (so `$(scripts/services.sh)` does not wait for it).
spawn() {
    local logfile=$1
    shift
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
}

show_log_tail() {
    if [[ -f "$1" ]]; then
        log "last lines of $1:"
        tail -n 20 "$1" >&2 || true
    fi
}

# --- MariaDB ---------------------------------------------------------------

start_mariadb() {
    local mariadbd=/usr/sbin/mariadbd
    local logfile="$RUN_DIR/rollbridge-mariadb.log"

    if mysqladmin ping >/dev/null 2>&1; then
        log "mariadb: already running"
    else
        if [[ ! -x "$mariadbd" ]] || ! command -v mysql >/dev/null 2>&1; then
            unavailable "mariadb: $mariadbd or the mysql client is not installed" \
                "(apt-get install mariadb-server mariadb-client)."
            return 0
        fi
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            log "mariadb: initialising the data directory"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$logfile" 2>&1
        fi
        log "mariadb: starting $mariadbd (log: $logfile)"
        # A buffer pool that holds a 100,000-machine fleet (the packaged default, 128 MiB, does
        # not: the benchmark's 100k checks then read pages from the OS cache).
        start-stop-daemon --start --oknodo --background --output "$logfile" \
            --exec "$mariadbd" -- --user=mysql --innodb-buffer-pool-size=1G
        if ! wait_for "$WAIT_SECONDS" mysqladmin ping; then
            show_log_tail "$logfile"
            unavailable "mariadb: no answer to 'mysqladmin ping' after ${WAIT_SECONDS}s."
            return 0
        fi
        log "mariadb: up"
    fi

    # Root reaches the server over the unix socket without a password.
    # ALTER USER keeps the password right if the user existed with another one;
    # ALL ON *.* because the tests create a database of their own each.
    if ! mysql --protocol=socket -uroot <<SQL; then
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DB\`;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL ON *.* TO '$MYSQL_USER'@'127.0.0.1';
GRANT ALL ON *.* TO '$MYSQL_USER'@'localhost';
SQL
        unavailable "mariadb: could not create the test database and user (run as root?)."
        return 0
    fi
    log "mariadb: database $MYSQL_DB and user $MYSQL_USER ready"
    export_var TEST_MYSQL_URL \
        "mysql://$MYSQL_USER:$MYSQL_PASSWORD@$MYSQL_HOST:$MYSQL_PORT/$MYSQL_DB"
}

# --- Docker engine ---------------------------------------------------------

start_docker() {
    local logfile="$RUN_DIR/rollbridge-dockerd.log"

    if docker info >/dev/null 2>&1; then
        log "docker: already running"
    else
        if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
            unavailable "docker: dockerd or the docker client is not installed (apt-get install docker.io)."
            return 0
        fi
        # No usable netfilter in the sandbox: iptables must be off.
        log "docker: starting dockerd --iptables=false (log: $logfile)"
        spawn "$logfile" dockerd --iptables=false
        if ! wait_for "$WAIT_SECONDS" docker info; then
            show_log_tail "$logfile"
            unavailable "docker: no answer to 'docker info' after ${WAIT_SECONDS}s."
            return 0
        fi
        log "docker: up"
    fi
    export_var TEST_DOCKER 1
}

# --- Local registry (distribution 2.8) -------------------------------------

registry_up() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/"; }

start_registry() {
    local dir="$RUN_DIR/rollbridge-registry"
    local logfile="$RUN_DIR/rollbridge-registry.log"

    if registry_up >/dev/null 2>&1; then
        log "registry: already running on $REGISTRY_ADDR"
    else
        if ! command -v docker-registry >/dev/null 2>&1; then
            unavailable "registry: docker-registry is not installed (apt-get install docker-registry)."
            return 0
        fi
        # Our own config: the packaged /etc/docker/registry/config.yml turns on
        # htpasswd auth, which makes pushes fail.
        mkdir -p "$dir/data"
        cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: "$REGISTRY_ADDR"
YAML
        log "registry: starting docker-registry on $REGISTRY_ADDR (log: $logfile)"
        spawn "$logfile" docker-registry serve "$dir/config.yml"
        if ! wait_for "$WAIT_SECONDS" registry_up; then
            show_log_tail "$logfile"
            unavailable "registry: no answer on http://$REGISTRY_ADDR/v2/ after ${WAIT_SECONDS}s."
            return 0
        fi
        log "registry: up"
    fi
    export_var TEST_REGISTRY "$REGISTRY_ADDR"
}

# --- chromedriver (headless Chromium) --------------------------------------

chromedriver_up() { curl -fsS -o /dev/null "http://127.0.0.1:$CHROMEDRIVER_PORT/status"; }

start_chromedriver() {
    local logfile="$RUN_DIR/rollbridge-chromedriver.log"

    if chromedriver_up >/dev/null 2>&1; then
        log "chromedriver: already running on port $CHROMEDRIVER_PORT"
    else
        if ! command -v chromedriver >/dev/null 2>&1; then
            unavailable "chromedriver: not installed (apt-get install chromium chromium-driver)."
            return 0
        fi
        log "chromedriver: starting on port $CHROMEDRIVER_PORT (log: $logfile)"
        spawn "$logfile" chromedriver --port="$CHROMEDRIVER_PORT"
        if ! wait_for "$WAIT_SECONDS" chromedriver_up; then
            show_log_tail "$logfile"
            unavailable "chromedriver: no answer on port $CHROMEDRIVER_PORT after ${WAIT_SECONDS}s."
            return 0
        fi
        log "chromedriver: up"
    fi
    export_var TEST_WEBDRIVER_URL "http://127.0.0.1:$CHROMEDRIVER_PORT"
}

# --- main ------------------------------------------------------------------

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
}

main() {
    local env_file="" services=() s

    while (($# > 0)); do
        case "$1" in
        --env-file)
            [[ $# -ge 2 ]] || { usage; exit 2; }
            env_file=$2
            shift 2
            ;;
        --env-file=*)
            env_file=${1#--env-file=}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        mariadb | docker | registry | chromedriver)
            services+=("$1")
            shift
            ;;
        all)
            services+=(mariadb docker registry chromedriver)
            shift
            ;;
        *)
            log "unknown service or option: $1"
            usage
            exit 2
            ;;
        esac
    done
    if ((${#services[@]} == 0)); then
        services=(mariadb)
    fi

    mkdir -p "$RUN_DIR"
    for s in "${services[@]}"; do
        case "$s" in
        mariadb) start_mariadb ;;
        docker) start_docker ;;
        registry) start_registry ;;
        chromedriver) start_chromedriver ;;
        esac
    done

    if ((${#EXPORTS[@]} > 0)); then
        printf '%s\n' "${EXPORTS[@]}"
    fi
    if [[ -n "$env_file" ]]; then
        if ((${#EXPORTS[@]} > 0)); then
            printf '%s\n' "${EXPORTS[@]}" >"$env_file"
        else
            : >"$env_file"
        fi
    fi
    exit "$FAILED"
}

main "$@"
