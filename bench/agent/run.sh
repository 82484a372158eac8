#!/usr/bin/env bash
# Benchmark: a release pushed to a registry → the replacement container is healthy.
#
#   bench/agent/run.sh                 # 5 rounds, webhook mode, embedded agent
#   ROUNDS=10 BIN=target/debug/rollbridge bench/agent/run.sh
#   MODE=rest bench/agent/run.sh       # promote through the REST API instead of a webhook
#
# Needs dockerd (scripts/services.sh docker), docker-registry, busybox-static, curl, jq and
# python3. Builds one offline test image per round (busybox httpd with a Docker HEALTHCHECK every
# second) and starts `rollbridge serve --local-agent` on a temporary SQLite database with one
# labelled container running the first version.
#
# MODE=webhook (default): the whole path a user sets up. The script starts its own
# docker-registry (Debian's, distribution 2.8) whose notifications go to rollbridge's
# /v1.0/hooks/registry with a bearer token, and binds the repository to the channel. Each round
# is a `docker push`: the registry notifies rollbridge, the release becomes a package promoted to
# the channel, the promotion wakes the embedded agent, which pulls from the registry, stops the
# old container, creates and starts the new one and waits for it to be healthy. The time is from
# the start of `docker push` to Docker reporting the new container `healthy`.
#
# MODE=rest: images are pushed up front (REGISTRY, default 127.0.0.1:5000, e.g. from
# scripts/services.sh registry); each round creates the package and moves the channel through the
# REST API, timed from the channel update.
#
# Docker's first healthcheck (interval 1 s) dominates. Nothing here is asserted; the numbers are
# for docs/agent.md and BENCHMARKS.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${ROUNDS:-5}
MODE=${MODE:-webhook}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/rollbridge}

case "$MODE" in
    webhook) command -v docker-registry >/dev/null \
        || { echo "bench/agent: docker-registry is required (apt-get install docker-registry)" >&2; exit 1; } ;;
    rest) ;;
    *) echo "bench/agent: MODE must be webhook or rest" >&2; exit 2 ;;
esac
for tool in docker curl jq python3; do
    command -v "$tool" >/dev/null || { echo "bench/agent: $tool is required" >&2; exit 1; }
done
[[ -x /bin/busybox ]] || { echo "bench/agent: /bin/busybox (busybox-static) is required" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "bench/agent: dockerd is not running (scripts/services.sh docker)" >&2; exit 1; }
if [[ ! -x "$BIN" ]]; then
    echo "bench/agent: building $BIN" >&2
    cargo build --release --bin rollbridge >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
ns="rbbench$(date +%s)$$"
port=$(free_port)
token="bench-registry-token-$$-$RANDOM"
if [[ "$MODE" == webhook ]]; then
    REGISTRY="127.0.0.1:$(free_port)"
else
    REGISTRY=${REGISTRY:-127.0.0.1:5000}
fi
repo="$REGISTRY/$ns/web"
name="$ns-web"
server_pid=""
registry_pid=""
images=()
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
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
}
# Pushes one version and prints its manifest digest.
push() {
    docker push -q "$repo:$1" >/dev/null
    docker image inspect "$repo:$1" --format '{{range .RepoDigests}}{{println .}}{{end}}' \
        | sed -n "s|^$repo@||p" | head -n1
}

base="http://127.0.0.1:$port"
if [[ "$MODE" == webhook ]]; then
    mkdir -p "$work/registry"
    printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  filesystem:" \
        "    rootdirectory: $work/registry/data" "http:" "  addr: $REGISTRY" \
        "notifications:" "  endpoints:" "    - name: rollbridge" "      url: $base/v1.0/hooks/registry" \
        "      headers:" "        Authorization: [Bearer $token]" "      timeout: 2s" \
        "      threshold: 3" "      backoff: 1s" >"$work/registry/config.yml"
    docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 1 100); do curl -sf "http://$REGISTRY/v2/" >/dev/null && break; sleep 0.1; done
    curl -sf "http://$REGISTRY/v2/" >/dev/null \
        || { echo "bench/agent: docker-registry did not start" >&2; cat "$work/registry.log" >&2; exit 1; }
fi

echo "bench/agent: building $ROUNDS+1 images in $repo ($MODE mode)" >&2
declare -A digest
for i in $(seq 0 "$ROUNDS"); do
    images+=("$repo:1.$i.0")   # here, not in build: that runs in a subshell
    build "1.$i.0"
    if [[ "$MODE" == rest ]]; then digest["1.$i.0"]=$(push "1.$i.0"); fi
done

"$BIN" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/bench.db" \
    --admin-password benchpass --local-agent --agent-interval 1h --agent-health-grace 2s \
    --registry-token "$token" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "$base/v1.0/health" >/dev/null && break; sleep 0.1; done

api() { curl -sf -u admin:benchpass -H 'content-type: application/json' "$@"; }
package() {
    api -X POST "$base/api/apps/$app/packages" -d "$(jq -n --arg v "$1" --arg r "$repo" --arg d "${digest[$1]}" \
        '{type: 2, version: $v, url: $r, filename: ($v + "@" + $d), image_repository: $r, image_digest: $d}')" | jq -r .id
}
app=$(api -X POST "$base/api/apps" -d "{\"name\":\"$ns\"}" | jq -r .id)
if [[ "$MODE" == rest ]]; then
    pkg=$(package 1.0.0)
    channel=$(api -X POST "$base/api/apps/$app/channels" -d "{\"name\":\"main\",\"color\":\"#000\",\"package_id\":\"$pkg\"}" | jq -r .id)
else
    channel=$(api -X POST "$base/api/apps/$app/channels" -d '{"name":"main","color":"#000"}' | jq -r .id)
    api -X POST "$base/api/apps/$app/bindings" \
        -d "$(jq -n --arg m "$repo" --arg c "$channel" '{kind: "registry", match: $m, channel_id: $c}')" >/dev/null
fi
# The version of the channel's package, as the server sees it.
channel_version() { api "$base/api/apps/$app/channels/$channel" | jq -r '.package.version // empty'; }
if [[ "$MODE" == webhook ]]; then
    push 1.0.0 >/dev/null
    for _ in $(seq 1 200); do [[ "$(channel_version)" == 1.0.0 ]] && break; sleep 0.05; done
    [[ "$(channel_version)" == 1.0.0 ]] || {
        echo "bench/agent: no registry notification for 1.0.0 reached the channel" >&2
        cat "$work/server.log" "$work/registry.log" >&2; exit 1; }
fi
group=$(api -X POST "$base/api/apps/$app/groups" -d "{\"name\":\"prod\",\"channel_id\":\"$channel\",\"policy_updates_enabled\":true,\"policy_safe_mode\":false,\"policy_period_interval\":\"1 minute\",\"policy_max_updates_per_period\":1000,\"policy_update_timeout\":\"60 minutes\",\"track\":\"stable\"}" | jq -r .id)
docker run -d --name "$name" --label "rollbridge.app=$app" -p "127.0.0.1::8080" "$repo:1.0.0" >/dev/null

now_ms() { date +%s%3N; }
results=()
for i in $(seq 1 "$ROUNDS"); do
    version="1.$i.0"
    if [[ "$MODE" == rest ]]; then
        pkg=$(package "$version")
        start=$(now_ms)
        api -X PUT "$base/api/apps/$app/channels/$channel" -d "{\"name\":\"main\",\"color\":\"#000\",\"package_id\":\"$pkg\"}" >/dev/null
    else
        start=$(now_ms)
        push "$version" >/dev/null
        pushed=$(( $(now_ms) - start ))
    fi
    until [[ "$(docker inspect "$name" --format '{{.Config.Image}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' 2>/dev/null)" == "$repo:$version healthy" ]]; do
        (( $(now_ms) - start > 120000 )) && { echo "round $i: timed out (see $work/server.log)" >&2; cat "$work/server.log" "$work/registry.log" >&2 2>/dev/null; exit 1; }
        sleep 0.05
    done
    elapsed=$(( $(now_ms) - start ))
    results+=("$elapsed")
    if [[ "$MODE" == rest ]]; then
        echo "round $i: publish $version -> container healthy in ${elapsed} ms"
    else
        echo "round $i: docker push $version -> container healthy in ${elapsed} ms (the push itself: ${pushed} ms)"
    fi
    # Let the agent report completion before the next release.
    for _ in $(seq 1 200); do
        status=$(api "$base/api/apps/$app/groups/$group/instances?perpage=10" | jq -r '.instances[0].application.status // empty')
        [[ "$status" == "4" ]] && break
        sleep 0.05
    done
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
count=${#results[@]}
echo "$MODE: publish -> healthy over $count rounds: min $(echo "$sorted" | head -n1) ms, median $(echo "$sorted" | sed -n "$(( (count + 1) / 2 ))p") ms, max $(echo "$sorted" | tail -n1) ms"
