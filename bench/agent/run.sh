#!/usr/bin/env bash
# Benchmark: publish a release → the replacement container is healthy.
#
#   bench/agent/run.sh                 # 5 rounds against the embedded agent
#   ROUNDS=10 BIN=target/debug/rollbridge bench/agent/run.sh
#
# Needs dockerd, the local registry on 127.0.0.1:5000 (scripts/services.sh docker registry),
# busybox-static, curl and jq. Builds one offline test image per round (busybox httpd with a
# Docker HEALTHCHECK every second), starts `rollbridge serve --local-agent` on a temporary
# SQLite database, runs one labelled container and then, per round, creates a Docker package
# through the REST API and moves the channel to it (the promotion wakes the embedded agent).
# It prints, per round, the milliseconds from the promotion request to the container named the
# same running the new image with health `healthy`, then min / median / max.
#
# The time includes the pull from the local registry, stop of the old container (SIGTERM, busybox
# the image's shell exits on SIGTERM), create + start, and Docker's first healthcheck (interval 1 s), which
# dominates. Nothing here is asserted; the numbers are for docs/agent.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${ROUNDS:-5}
REGISTRY=${REGISTRY:-127.0.0.1:5000}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/rollbridge}

for tool in docker curl jq; do
    command -v "$tool" >/dev/null || { echo "bench/agent: $tool is required" >&2; exit 1; }
done
[[ -x /bin/busybox ]] || { echo "bench/agent: /bin/busybox (busybox-static) is required" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "bench/agent: dockerd is not running (scripts/services.sh docker)" >&2; exit 1; }
if [[ ! -x "$BIN" ]]; then
    echo "bench/agent: building $BIN" >&2
    cargo build --release --bin rollbridge >&2
fi

work=$(mktemp -d)
ns="rbbench$(date +%s)$$"
repo="$REGISTRY/$ns/web"
name="$ns-web"
port=$(( 20000 + RANDOM % 20000 ))
server_pid=""
images=()
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    docker ps -aq --filter "name=$name" | xargs -r docker rm -f >/dev/null 2>&1 || true
    for i in "${images[@]}"; do docker rmi "$i" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# One image per version, each a distinct image (so every round really pulls and recreates).
build() {
    local version=$1 root="$work/root-$1"
    mkdir -p "$root/bin" "$root/www"
    cp /bin/busybox "$root/bin/busybox"
    for t in sh httpd wget; do ln -s busybox "$root/bin/$t"; done
    echo "web $version" >"$root/www/index.html"
    tar -C "$root" -c . | docker import \
        -c 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM; httpd -f -p 8080 -h /www & wait"]' -c 'EXPOSE 8080' \
        -c 'HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1' \
        - "$repo:$version" >/dev/null
    docker push -q "$repo:$version" >/dev/null
    docker image inspect "$repo:$version" --format '{{range .RepoDigests}}{{println .}}{{end}}' \
        | sed -n "s|^$repo@||p" | head -n1
}

echo "bench/agent: building $ROUNDS+1 images in $repo" >&2
declare -A digest
for i in $(seq 0 "$ROUNDS"); do
    images+=("$repo:1.$i.0")   # here, not in build: that runs in a subshell
    digest["1.$i.0"]=$(build "1.$i.0")
done

"$BIN" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/bench.db" \
    --admin-password benchpass --local-agent --agent-interval 1h --agent-health-grace 2s \
    >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/v1.0/health" >/dev/null && break; sleep 0.1; done

api() { curl -sf -u admin:benchpass -H 'content-type: application/json' "$@"; }
package() {
    api -X POST "$base/api/apps/$app/packages" -d "$(jq -n --arg v "$1" --arg r "$repo" --arg d "${digest[$1]}" \
        '{type: 2, version: $v, url: $r, filename: ($v + "@" + $d), image_repository: $r, image_digest: $d}')" | jq -r .id
}
app=$(api -X POST "$base/api/apps" -d "{\"name\":\"$ns\"}" | jq -r .id)
pkg=$(package 1.0.0)
channel=$(api -X POST "$base/api/apps/$app/channels" -d "{\"name\":\"main\",\"color\":\"#000\",\"package_id\":\"$pkg\"}" | jq -r .id)
group=$(api -X POST "$base/api/apps/$app/groups" -d "{\"name\":\"prod\",\"channel_id\":\"$channel\",\"policy_updates_enabled\":true,\"policy_safe_mode\":false,\"policy_period_interval\":\"1 minute\",\"policy_max_updates_per_period\":1000,\"policy_update_timeout\":\"60 minutes\",\"track\":\"stable\"}" | jq -r .id)
docker run -d --name "$name" --label "rollbridge.app=$app" -p "127.0.0.1::8080" "$repo:1.0.0" >/dev/null

now_ms() { date +%s%3N; }
results=()
for i in $(seq 1 "$ROUNDS"); do
    version="1.$i.0"
    pkg=$(package "$version")
    start=$(now_ms)
    api -X PUT "$base/api/apps/$app/channels/$channel" -d "{\"name\":\"main\",\"color\":\"#000\",\"package_id\":\"$pkg\"}" >/dev/null
    until [[ "$(docker inspect "$name" --format '{{.Config.Image}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' 2>/dev/null)" == "$repo:$version healthy" ]]; do
        (( $(now_ms) - start > 120000 )) && { echo "round $i: timed out (see $work/server.log)" >&2; cat "$work/server.log" >&2; exit 1; }
        sleep 0.05
    done
    elapsed=$(( $(now_ms) - start ))
    results+=("$elapsed")
    echo "round $i: publish $version -> container healthy in ${elapsed} ms"
    # Let the agent report completion before the next release.
    for _ in $(seq 1 200); do
        status=$(api "$base/api/apps/$app/groups/$group/instances?perpage=10" | jq -r '.instances[0].application.status // empty')
        [[ "$status" == "4" ]] && break
        sleep 0.05
    done
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
count=${#results[@]}
echo "publish -> healthy over $count rounds: min $(echo "$sorted" | head -n1) ms, median $(echo "$sorted" | sed -n "$(( (count + 1) / 2 ))p") ms, max $(echo "$sorted" | tail -n1) ms"
