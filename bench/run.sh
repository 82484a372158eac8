#!/usr/bin/env bash
# rollbridge load benchmark: builds the release binary, starts `rollbridge serve` on a fresh
# database, seeds an application through the REST API and drives load on loopback with wrk.
# Results are printed and written to BENCHMARKS.md (each scenario's table replaced by its
# latest run). See bench/README.md for the options and what each scenario measures.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/run.sh [options]

  --quick               short run (< 2 minutes): noop, omaha and webhook, 2 s warm-up, 8 s each
  --mysql [URL]         MariaDB/MySQL backend (default URL: $TEST_MYSQL_URL); a fresh database
                        is created for the run and dropped afterwards
  --scenarios LIST      comma-separated subset of: noop,omaha,omaha100k,rollout,rest,webhook
                        (default: all of them, in that order; --quick: noop,omaha,webhook)
  --duration SECONDS    measured seconds per scenario (default 30, quick 8)
  --warmup SECONDS      unmeasured warm-up before each scenario (default 5, quick 2)
  --connections N       wrk connections (default 64)
  --rest-connections N  wrk connections of the rest scenario (default 2: a few dashboard users)
  --webhook-senders N   connections of the webhook scenario's second, latency run (default 4:
                        a few CI pipelines delivering at once; the first run uses --connections)
  --machines N          machines of the omaha scenario (default 10000)
  --machines-large N    machines of the omaha100k scenario (default 100000)
  --no-build            use the existing release binary
  --no-write            print the results only, do not touch BENCHMARKS.md
  --server-cpus LIST    taskset CPU list for the server (default: all but the last CPU)
  --wrk-cpus LIST       taskset CPU list for wrk (default: the last CPU)
  --label TEXT          backend label in BENCHMARKS.md (default sqlite or mariadb)
  -h, --help            this help

Environment: CARGO_TARGET_DIR (where the release binary is built), RUST_LOG for the server
(default "warn": the per-request access log is not part of what is measured), BENCH_SERVER_LOG
(keep the server's log in this file; by default it is removed with the run's temp dir),
BENCH_DATA_DIR (where the SQLite temp dir is created, default ./target/bench-data — a
disk-backed directory, so fsync costs what it costs in production).
EOF
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
QUICK=0
MYSQL_URL=""
SCENARIOS=""
DURATION=""
WARMUP=""
CONNECTIONS=64
REST_CONNECTIONS=2
WEBHOOK_SENDERS=4
MACHINES=10000
MACHINES_LARGE=100000
BUILD=1
WRITE=1
LABEL=""
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  SERVER_CPUS="0-$((NCPU - 2))"
  WRK_CPUS="$((NCPU - 1))"
else
  SERVER_CPUS="0"
  WRK_CPUS="0"
fi

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --mysql)
      if [ $# -gt 1 ] && [[ "$2" == mysql://* || "$2" == mariadb://* ]]; then
        MYSQL_URL="$2"; shift
      else
        MYSQL_URL="${TEST_MYSQL_URL:-}"
        [ -n "$MYSQL_URL" ] || { echo "--mysql needs a URL or TEST_MYSQL_URL" >&2; exit 2; }
      fi ;;
    --scenarios) SCENARIOS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --connections) CONNECTIONS="$2"; shift ;;
    --rest-connections) REST_CONNECTIONS="$2"; shift ;;
    --webhook-senders) WEBHOOK_SENDERS="$2"; shift ;;
    --machines) MACHINES="$2"; shift ;;
    --machines-large) MACHINES_LARGE="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --no-write) WRITE=0 ;;
    --server-cpus) SERVER_CPUS="$2"; shift ;;
    --wrk-cpus) WRK_CPUS="$2"; shift ;;
    --label) LABEL="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$MYSQL_URL" ] && [ -n "${BENCH_MYSQL:-}" ]; then MYSQL_URL="${TEST_MYSQL_URL:-}"; fi
if [ "$QUICK" = 1 ]; then
  DURATION="${DURATION:-8}"; WARMUP="${WARMUP:-2}"
  # The 100,000-machine scenarios need minutes of writes to set up: full runs only.
  SCENARIOS="${SCENARIOS:-noop,omaha,webhook}"
else
  DURATION="${DURATION:-30}"; WARMUP="${WARMUP:-5}"
  SCENARIOS="${SCENARIOS:-noop,omaha,omaha100k,rollout,rest,webhook}"
fi
BACKEND=sqlite
[ -n "$MYSQL_URL" ] && BACKEND=mariadb
LABEL="${LABEL:-$BACKEND}"

for tool in wrk curl jq python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (Debian: apt-get install $tool)" >&2; exit 2; }
done

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BENCH_BINARY:-$TARGET_DIR/release/rollbridge}"
if [ "$BUILD" = 1 ]; then
  echo "== building release binary ($BIN)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
[ -x "$BIN" ] || { echo "no release binary at $BIN (run without --no-build)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rb-bench.XXXXXX")"
DATA_BASE="${BENCH_DATA_DIR:-$ROOT/target/bench-data}"
mkdir -p "$DATA_BASE"
DATA="$(mktemp -d "$DATA_BASE/run.XXXXXX")"
SERVER_PID=""
SINK_PID=""
MYSQL_DB=""

mysql_cli() {
  # mysql://user:pass@host:port/db -> mariadb client arguments
  python3 - "$1" <<'EOF'
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1].replace("mariadb://", "mysql://", 1))
print(f"-u{urllib.parse.unquote(u.username or '')} -p{urllib.parse.unquote(u.password or '')} -h{u.hostname or '127.0.0.1'} -P{u.port or 3306}")
EOF
}

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  if [ -n "$MYSQL_DB" ]; then
    # shellcheck disable=SC2046
    mysql $(mysql_cli "$MYSQL_URL") -e "DROP DATABASE IF EXISTS $MYSQL_DB" 2>/dev/null || true
  fi
  rm -rf "$WORK" "$DATA"
}
trap cleanup EXIT

if [ -n "$MYSQL_URL" ]; then
  # shellcheck disable=SC2046
  POOL_BYTES=$(mysql $(mysql_cli "$MYSQL_URL") -N -e "SELECT @@innodb_buffer_pool_size" 2>/dev/null || echo 0)
  echo "== MariaDB innodb_buffer_pool_size: $((POOL_BYTES >> 20)) MiB"
  if [ "$POOL_BYTES" -lt $((512 << 20)) ]; then
    echo "   warning: below 512 MiB (Debian's default is 128 MiB): the 100,000-machine scenarios will" >&2
    echo "   read pages from the OS cache. scripts/services.sh starts MariaDB with 1 GiB; on a running" >&2
    echo "   server: SET GLOBAL innodb_buffer_pool_size = 1073741824;" >&2
  fi
  MYSQL_DB="rollbridge_bench_$(date +%s)_$$"
  # shellcheck disable=SC2046
  mysql $(mysql_cli "$MYSQL_URL") -e "CREATE DATABASE $MYSQL_DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
  # The URL's query string (e.g. ?pool_max=16) is kept; only the database name changes.
  MYSQL_BASE="${MYSQL_URL%%\?*}"
  MYSQL_QUERY=""
  [[ "$MYSQL_URL" == *\?* ]] && MYSQL_QUERY="?${MYSQL_URL#*\?}"
  DB_URL="${MYSQL_BASE%/*}/$MYSQL_DB$MYSQL_QUERY"
else
  DB_URL="sqlite://$DATA/rollbridge.db"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
WEBHOOK_SECRET="bench-webhook-secret"
EXTRA_ARGS=()
if "$BIN" serve --help 2>/dev/null | grep -q -- '--webhook-secret'; then
  EXTRA_ARGS+=(--webhook-secret "$WEBHOOK_SECRET")
fi
# The generic deliveries name their application without a binding: that takes the generic key.
if "$BIN" serve --help 2>/dev/null | grep -q -- '--generic-webhook-secret'; then
  EXTRA_ARGS+=(--generic-webhook-secret "$WEBHOOK_SECRET")
fi

# Docker Hub deliveries carry a callback_url; a stand-in Docker Hub on loopback (on wrk's CPU)
# answers the callbacks, so the server does the outbound POST it does in production.
taskset -c "$WRK_CPUS" python3 "$BENCH_DIR/callback_sink.py" "$WORK/sink.port" "$WORK/sink.count" &
SINK_PID=$!
for _ in $(seq 1 50); do [ -s "$WORK/sink.port" ] && break; sleep 0.1; done
SINK_PORT=$(cat "$WORK/sink.port" 2>/dev/null || true)
[ -n "$SINK_PORT" ] || { echo "the callback sink did not start" >&2; exit 1; }
if "$BIN" serve --help 2>/dev/null | grep -q -- '--callback-allow-host'; then
  EXTRA_ARGS+=(--callback-allow-host 127.0.0.1)
fi

echo "== starting server on $BASE ($BACKEND, cpus $SERVER_CPUS; wrk on cpus $WRK_CPUS)"
SERVER_LOG="${BENCH_SERVER_LOG:-$WORK/server.log}"
RUST_LOG="${RUST_LOG:-warn}" taskset -c "$SERVER_CPUS" "$BIN" serve --listen "127.0.0.1:$PORT" \
  --database-url "$DB_URL" --admin-password admin "${EXTRA_ARGS[@]}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "$BASE/v1.0/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/v1.0/health" >/dev/null || { echo "server did not start" >&2; cat "$SERVER_LOG" >&2; exit 1; }

AUTH=(-u admin:admin)
AUTH_HEADER="Authorization: Basic $(printf admin:admin | base64)"
api() { # METHOD PATH [JSON]
  local out
  if [ $# -ge 3 ]; then
    out=$(curl -sS "${AUTH[@]}" -X "$1" -H 'Content-Type: application/json' -d "$3" -w '\n%{http_code}' "$BASE$2")
  else
    out=$(curl -sS "${AUTH[@]}" -X "$1" -w '\n%{http_code}' "$BASE$2")
  fi
  local code="${out##*$'\n'}"
  local body="${out%$'\n'*}"
  if [ "${code:0:1}" != 2 ]; then echo "seed: $1 $2 -> $code $body" >&2; exit 1; fi
  printf '%s' "$body"
}

echo "== seeding"
APP_NAME="bench-app"
APP_ID=$(api POST /api/apps "{\"name\":\"$APP_NAME\"}" | jq -r .id)
PKG_ID=$(api POST "/api/apps/$APP_ID/packages" \
  '{"type":4,"version":"2.0.0","url":"https://pkgs.example.com/bench/","filename":"bench-2.0.0.tgz","size":"1048576","hash":"aGFzaA=="}' | jq -r .id)
CHANNEL_ID=$(api POST "/api/apps/$APP_ID/channels" "{\"name\":\"stable\",\"color\":\"#14b9d6\",\"package_id\":\"$PKG_ID\"}" | jq -r .id)
LIMIT=50
OPEN_GROUP=$(api POST "/api/apps/$APP_ID/groups" "{\"name\":\"open\",\"track\":\"open\",\"channel_id\":\"$CHANNEL_ID\",
  \"policy_updates_enabled\":true,\"policy_safe_mode\":false,\"policy_period_interval\":\"1 hours\",
  \"policy_max_updates_per_period\":1000000,\"policy_update_timeout\":\"24 hours\"}" | jq -r .id)
LIMITED_GROUP=$(api POST "/api/apps/$APP_ID/groups" "{\"name\":\"limited\",\"track\":\"limited\",\"channel_id\":\"$CHANNEL_ID\",
  \"policy_updates_enabled\":true,\"policy_safe_mode\":false,\"policy_period_interval\":\"1 hours\",
  \"policy_max_updates_per_period\":$LIMIT,\"policy_update_timeout\":\"1 hours\"}" | jq -r .id)
# The webhook scenario's Docker Hub deliveries go to this application's stable channel.
api POST "/api/apps/$APP_ID/bindings" "{\"kind\":\"dockerhub\",\"match\":\"bench/bench-app\",\"channel_id\":\"$CHANNEL_ID\"}" >/dev/null
echo "   app $APP_ID, open group $OPEN_GROUP, limited group $LIMITED_GROUP (max $LIMIT per hour)"

export BENCH_DIR BENCH_APP_ID="$APP_ID" BENCH_OPEN_TRACK=open BENCH_LIMITED_TRACK=limited BENCH_THREADS=1

# Server CPU time (user + system, in clock ticks) from /proc: CPU per request is less sensitive
# to other load on a shared machine than req/s.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status"; }

# Machine-wide CPU time stolen by the hypervisor (ticks), and all CPU time: a VM that shares its
# host loses throughput to other guests; the share during each measurement is reported.
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }
total_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

declare -A RESULTS
run_wrk() { # NAME SCRIPT URL [extra wrk args...]
  local name="$1" script="$2" url="$3"; shift 3
  if [ "$WARMUP" -gt 0 ]; then
    taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$script" "$@" "$url" >/dev/null 2>&1 || true
  fi
  local out cpu_before cpu_after steal_before steal_after total_before total_after
  cpu_before=$(cpu_ticks); steal_before=$(steal_ticks); total_before=$(total_ticks)
  out=$(taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$script" "$@" "$url" 2>&1)
  cpu_after=$(cpu_ticks); steal_after=$(steal_ticks); total_after=$(total_ticks)
  local steal_pct=$(( (steal_after - steal_before) * 100 / ((total_after - total_before) > 0 ? (total_after - total_before) : 1) ))
  local line
  line=$(grep '^RESULT' <<<"$out" || true)
  [ -n "$line" ] || { echo "wrk failed for $name:" >&2; echo "$out" >&2; return 1; }
  local requests cpu_us
  requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
  cpu_us=$(( (cpu_after - cpu_before) * 1000000 / CLK_TCK / (requests > 0 ? requests : 1) ))
  RESULTS[$name]="$line rss_kb=$(rss_kb) hwm_kb=$(hwm_kb) cpu_us_per_req=$cpu_us steal_pct=$steal_pct connections=$CONNECTIONS"
  echo "   $name: $line rss_kb=$(rss_kb) cpu_us_per_req=$cpu_us steal=${steal_pct}%"
}

field() { # RESULT_LINE KEY
  sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"
}

# Omaha checks the server answered so far (its own counter, all paths).
checks_served() {
  curl -fsS "${AUTH[@]}" "$BASE/metrics" | awk '/^rollbridge_omaha_checks_total/ {s += $2} END {printf "%d", s}'
}

# Walks every machine of a fleet through its first LIFECYCLE_VISITS checks (registration, grant,
# download events, completion) before a scenario measures its steady state: the measured run
# continues each machine's life cycle from there (BENCH_VISIT_OFFSET), so the 10,000- and the
# 100,000-machine figures measure the same mix. wrk has no request limit, so it runs until the
# server has answered enough checks and is stopped then.
LIFECYCLE_VISITS=5
lifecycle_warmup() { # MACHINES PREFIX
  local machines="$1" prefix="$2" start target started
  start=$(checks_served)
  target=$((start + LIFECYCLE_VISITS * machines + CONNECTIONS))
  started=$(date +%s)
  BENCH_MACHINES="$machines" BENCH_MACHINE_PREFIX="$prefix" BENCH_VISIT_OFFSET=0 taskset -c "$WRK_CPUS" \
    wrk -t1 -c"$CONNECTIONS" -d900s --timeout 5s -s "$BENCH_DIR/omaha.lua" "$BASE/v1/update/" >/dev/null 2>&1 &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    sleep 0.5
    [ "$(checks_served)" -ge "$target" ] && break
  done
  kill "$wrk_pid" 2>/dev/null || true; wait "$wrk_pid" 2>/dev/null || true
  LIFECYCLE_SECONDS=$(( $(date +%s) - started ))
  echo "   life-cycle warm-up: $machines machines x $LIFECYCLE_VISITS checks in ${LIFECYCLE_SECONDS}s"
}

# A fleet's steady state: every machine walked through its life cycle first, then measured.
omaha_steady_state() { # NAME MACHINES PREFIX
  local name="$1" machines="$2" prefix="$3"
  echo "== omaha-check: $machines machines"
  lifecycle_warmup "$machines" "$prefix"
  BENCH_MACHINES="$machines" BENCH_MACHINE_PREFIX="$prefix" BENCH_VISIT_OFFSET=$LIFECYCLE_VISITS \
    run_wrk "$name" "$BENCH_DIR/omaha.lua" "$BASE/v1/update/"
  RESULTS[$name]="${RESULTS[$name]} lifecycle_s=$LIFECYCLE_SECONDS"
}

NOTES=()
IFS=',' read -r -a WANT <<<"$SCENARIOS"
for scenario in "${WANT[@]}"; do
  case "$scenario" in
    noop)
      echo "== noop: GET /v1.0/health"
      run_wrk noop "$BENCH_DIR/get.lua" "$BASE/v1.0/health" ;;
    omaha) omaha_steady_state omaha "$MACHINES" a ;;
    omaha100k) omaha_steady_state omaha100k "$MACHINES_LARGE" b ;;
    rollout)
      # A rollout wave: machines never seen before, measured from their first check, so every
      # request writes (registration + grant, download events, completion).
      echo "== omaha-rollout: $MACHINES_LARGE new machines from their first check"
      WARMUP_SAVED=$WARMUP; WARMUP=0
      BENCH_MACHINES="$MACHINES_LARGE" BENCH_MACHINE_PREFIX=c BENCH_VISIT_OFFSET=0 \
        run_wrk rollout "$BENCH_DIR/omaha.lua" "$BASE/v1/update/"
      WARMUP=$WARMUP_SAVED ;;
    rest)
      # The group page's stats cover every active instance: make sure the fleet is there.
      have=$(api GET "/api/apps/$APP_ID/groups/$OPEN_GROUP" | jq '.instances_stats.total')
      want=$((MACHINES_LARGE * 9 / 10))
      if [ "$have" -lt "$want" ]; then
        echo "== seeding $MACHINES_LARGE machines for the rest scenario ($have in the group)"
        BENCH_MACHINES="$MACHINES_LARGE" BENCH_MACHINE_PREFIX=b taskset -c "$WRK_CPUS" \
          wrk -t1 -c"$CONNECTIONS" -d600s -s "$BENCH_DIR/omaha.lua" "$BASE/v1/update/" >/dev/null 2>&1 &
        seed_pid=$!
        while kill -0 "$seed_pid" 2>/dev/null; do
          sleep 2
          have=$(api GET "/api/apps/$APP_ID/groups/$OPEN_GROUP" | jq '.instances_stats.total')
          [ "$have" -ge "$want" ] && break
        done
        kill "$seed_pid" 2>/dev/null || true; wait "$seed_pid" 2>/dev/null || true
      fi
      echo "== rest: GET group page with stats ($have instances in the group)"
      CONNECTIONS="$REST_CONNECTIONS" run_wrk rest "$BENCH_DIR/get.lua" "$BASE/api/apps/$APP_ID/groups/$OPEN_GROUP" -H "$AUTH_HEADER"
      RESULTS[rest]="${RESULTS[rest]} instances=$have" ;;
    webhook)
      echo "== webhook: Docker Hub and generic signed webhooks"
      # Two files of deliveries, each naming new versions (every delivery creates a package):
      # one for the saturated run, one (newer versions, so promotions go on) for the latency run.
      python3 - "$WORK" "$WEBHOOK_SECRET" "$APP_NAME" 200000 "$SINK_PORT" <<'EOF'
import hashlib, hmac, json, sys
work, secret, app, n, sink_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

def docker(version, i):
    body = json.dumps({
        "callback_url": f"http://127.0.0.1:{sink_port}/u/bench/bench-app/hook/bench/",
        "push_data": {"pushed_at": 1700000000 + i, "pusher": "bench", "tag": version},
        "repository": {"repo_name": "bench/bench-app", "name": "bench-app", "namespace": "bench",
                       "status": "Active", "is_private": False,
                       "repo_url": "https://hub.docker.com/r/bench/bench-app"},
    }, separators=(",", ":"))
    return f"/v1.0/hooks/dockerhub/{secret}\t-\t{body}\n"

def generic(version):
    body = json.dumps({"app": app, "version": version, "image": f"bench/bench-app:{version}"},
                      separators=(",", ":"))
    sig = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"/v1.0/hooks/generic/bench\t{sig}\t{body}\n"

def deliveries(path, first, count):
    with open(path, "w") as f:
        for i in range(first, first + count):
            version = f"{3 + i // 1000000}.{(i // 1000) % 1000}.{i % 1000}"
            f.write(docker(version, i) if i % 2 == 0 else generic(version))

deliveries(f"{work}/webhooks.txt", 0, n)
deliveries(f"{work}/webhooks-few.txt", 1000000, n)
with open(f"{work}/probes.txt", "w") as f:
    f.write(docker("2.9.9", 0))
    f.write(generic("2.9.8"))
EOF
      missing=""
      while IFS=$'\t' read -r path sig body; do
        kind=dockerhub; [[ "$path" == */generic/* ]] && kind=generic
        args=(-s -o "$WORK/probe.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json')
        [ "$sig" != - ] && args+=(-H "X-Hub-Signature-256: $sig")
        code=$(curl "${args[@]}" --data-binary "$body" "$BASE$path")
        echo "   probe $kind: HTTP $code $(head -c 200 "$WORK/probe.out")"
        if [ "$code" = 404 ]; then missing="$missing $kind"; fi
      done <"$WORK/probes.txt"
      if [ -n "$missing" ]; then
        echo "   webhook: endpoint missing (404) for:$missing — scenario skipped"
        RESULTS[webhook]="MISSING endpoint missing (404):$missing"
      else
        BENCH_WEBHOOK_FILE="$WORK/webhooks.txt" run_wrk webhook "$BENCH_DIR/webhook.lua" "$BASE"
        # The same deliveries from a few senders at once: latency when the writer is not
        # saturated (at 64 connections latency is queueing: connections / throughput).
        echo "== webhook: $WEBHOOK_SENDERS senders"
        BENCH_WEBHOOK_FILE="$WORK/webhooks-few.txt" CONNECTIONS="$WEBHOOK_SENDERS" \
          run_wrk webhook_few "$BENCH_DIR/webhook.lua" "$BASE"
        sleep 1
        echo "   Docker Hub callbacks answered by the stand-in: $(cat "$WORK/sink.count" 2>/dev/null || echo 0)"
      fi ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done

# Exactness under load: the limited group must hold exactly min(LIMIT, its machines) grants.
GROUP_JSON=$(api GET "/api/apps/$APP_ID/groups/$LIMITED_GROUP")
GRANTED=$(jq '.instances_stats | .update_granted + .downloading + .downloaded + .installed + .complete + .error' <<<"$GROUP_JSON")
LIMITED_TOTAL=$(jq '.instances_stats.total' <<<"$GROUP_JSON")
EXPECTED=$(( LIMITED_TOTAL < LIMIT ? LIMITED_TOTAL : LIMIT ))
if [ "$GRANTED" = "$EXPECTED" ]; then
  GRANT_CHECK="exact: $GRANTED granted of $LIMITED_TOTAL machines in the limited group (policy: $LIMIT per period)"
else
  GRANT_CHECK="VIOLATED: $GRANTED granted of $LIMITED_TOTAL machines in the limited group (policy: $LIMIT per period, expected $EXPECTED)"
fi
echo "== grants: $GRANT_CHECK"
FINAL_RSS=$(rss_kb); FINAL_HWM=$(hwm_kb)
echo "== server RSS at the end: $((FINAL_RSS / 1024)) MiB (peak $((FINAL_HWM / 1024)) MiB)"

RESULT_FILE="$WORK/results.txt"
: >"$RESULT_FILE"
for k in "${!RESULTS[@]}"; do echo "$k ${RESULTS[$k]}" >>"$RESULT_FILE"; done

python3 "$BENCH_DIR/report.py" \
  --results "$RESULT_FILE" --label "$LABEL" --quick "$QUICK" --duration "$DURATION" --warmup "$WARMUP" \
  --connections "$CONNECTIONS" --machines "$MACHINES" --machines-large "$MACHINES_LARGE" \
  --grant-check "$GRANT_CHECK" --server-cpus "$SERVER_CPUS" --wrk-cpus "$WRK_CPUS" \
  --commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo -dirty)" \
  $( [ "$WRITE" = 1 ] && echo --write "$ROOT/BENCHMARKS.md" )
