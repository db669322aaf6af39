#!/usr/bin/env bash
# The control plane at scale: a release routerd takes ROUTES API routes (default 10,000:
# `path /svcN/{id}` + `method GET`, as a cluster's controller would sync them) in one
# `POST /api/v1/routes/apply`, then CHANGES single `POST /api/v1/routes` on top of them (default
# 10), each timed end to end from the client (the answer comes after the change is stored and
# the new table is served). Reports the apply, each change, their median, and routerd's RSS
# before the apply, after it and after the changes. Bounded: one apply and CHANGES requests, on
# 127.0.0.1 only.
#
#   bash tests/bench/control_plane.sh
#   ROUTES=100000 CHANGES=5 bash tests/bench/control_plane.sh
#   ROUTERD_BIN=/path/to/routerd bash tests/bench/control_plane.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/common.sh

ROUTES="${ROUTES:-10000}"
CHANGES="${CHANGES:-10}"
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
echo '{"routes": []}' >"$tmp/config.json"
admin_port="$(port)"
proxy_port="$(port)"
RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --listen "127.0.0.1:$proxy_port" \
    --admin "127.0.0.1:$admin_port" --plugins "$tmp/plugins" --data "$tmp/data" \
    >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

python3 - "$ROUTES" "$CHANGES" "$admin_port" "$pid" <<'PY'
import json, statistics, sys, time, urllib.request
n, changes, port, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
base = f"http://127.0.0.1:{port}/api/v1"

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def route(i):
    return {"name": f"svc{i}", "target_url": "http://127.0.0.1:9",
            "matchers": [{"condition": "path", "pattern": f"/svc{i}/{{id}}"},
                         {"condition": "method", "pattern": "GET"}]}

def post(path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST",
                                 headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        status = r.status
    took = (time.perf_counter() - start) * 1000
    assert status in (200, 201), status
    return took

idle = rss_mb()
apply_ms = post("/routes/apply", {"routes": [route(i) for i in range(n)]})
applied = rss_mb()
each = [post("/routes", route(n + k)) for k in range(changes)]
after = rss_mb()
print(f"routes: {n}; apply: {apply_ms:.1f} ms")
print("single creates (ms): " + " ".join(f"{t:.1f}" for t in each))
print(f"single create median: {statistics.median(each):.1f} ms, min {min(each):.1f}, max {max(each):.1f}")
print(f"RSS: idle {idle:.1f} MB, after apply {applied:.1f} MB "
      f"({(applied - idle) * 1024 * 1024 / n:.0f} bytes/route), after {changes} creates {after:.1f} MB")
PY
