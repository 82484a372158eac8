#!/usr/bin/env bash
# Run the whole test suite: formatting, clippy, then every test on both
# database backends (SQLite always; MariaDB via TEST_MYSQL_URL).
#
#   scripts/test.sh [ARGS...]     ARGS go to `cargo test`, e.g. `scripts/test.sh omaha`
#
# Environment:
#   CARGO_TARGET_DIR       default $HOME/.cache/rollbridge-target (outside the clone,
#                          so repeated runs and fresh CI clones reuse the build)
#   ROLLBRIDGE_SERVICES    services to start with scripts/services.sh (default: mariadb)
#   TEST_MYSQL_URL         if already set, that server is used and no MariaDB is started
#   CI=true                a service that cannot be started fails the run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -d "${HOME:-/root}/.cargo/bin" ]]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/rollbridge-target}"
mkdir -p "$CARGO_TARGET_DIR"

step() { printf '\n==> %s\n' "$*"; }

# The concurrency tests open hundreds of sockets at once.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

step "services"
read -r -a services <<<"${ROLLBRIDGE_SERVICES:-mariadb}"
if [[ -n "${TEST_MYSQL_URL:-}" ]]; then
    echo "TEST_MYSQL_URL is already set: using that server, not starting MariaDB"
    wanted=()
    for s in "${services[@]}"; do
        [[ "$s" == mariadb ]] || wanted+=("$s")
    done
    services=("${wanted[@]+"${wanted[@]}"}")
fi
if ((${#services[@]} > 0)); then
    # The assignment fails (and set -e stops us) if services.sh exits non-zero.
    env_out=$(scripts/services.sh "${services[@]}")
    eval "$env_out"
fi
if [[ -n "${TEST_MYSQL_URL:-}" ]]; then
    # Password masked: a TEST_MYSQL_URL given from outside may carry a real one.
    echo "TEST_MYSQL_URL=$(sed -E 's#(//[^:/@]*):[^@]*@#\1:***@#' <<<"$TEST_MYSQL_URL")"
else
    echo "TEST_MYSQL_URL not set: the MySQL tests will skip"
fi
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test --locked $*"
cargo test --locked "$@"

step "all checks passed"
