#!/usr/bin/env bash
# The control plane at scale: a release routerd takes ROUTES API routes (default 10,000:
# `path /svcN/{id}` + `method GET`, as a cluster's controller would sync them) in one
# `POST /api/v1/routes/apply`, then CHANGES single `POST /api/v1/routes` on top of them (default
# 50), each timed end to end from the client (the answer comes after the change is stored and
# the new table is served). Reports the apply, each change, their median, routerd's CPU time
# per change (from /proc, in clock ticks of 10 ms: enough changes make it exact), and its RSS
# before the apply, after it and after the changes.
#
# Then changes sustained under traffic: wrk (-t1, CONNS connections, SUSTAIN seconds) on a route
# of the big table (`/probe/{id}`, answered by routerd's `respond` filter, so what is measured is
# routerd alone), once quiet and once while a client updates one route after another
# (`PUT /api/v1/routes/svcN`, a new target each time) at RATE changes a second (default 100).
# Reports both runs' rps, p50 and p99, the rate reached, and the changes' latency. Pinning as
# e2e.sh pins on 2 or more CPUs: routerd (its workers and its control plane) on CPU 1, wrk and
# the changing client on CPU 0.
#
# Bounded: one apply, CHANGES requests, RATE x SUSTAIN updates, fixed-length wrk runs; 127.0.0.1
# only.
#
#   bash tests/bench/control_plane.sh
#   ROUTES=100000 CHANGES=5 SUSTAIN=0 bash tests/bench/control_plane.sh   # no sustained phase
#   RATE=200 SUSTAIN=10 bash tests/bench/control_plane.sh
#   ROUTERD_BIN=/path/to/routerd bash tests/bench/control_plane.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/common.sh

ROUTES="${ROUTES:-10000}"
CHANGES="${CHANGES:-50}"
RATE="${RATE:-100}"
SUSTAIN="${SUSTAIN:-10}"
CONNS="${CONNS:-32}"
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
if ((SUSTAIN > 0)) && ! command -v wrk >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if (($(nproc) >= 2)); then
    pin_proxy=(taskset -c 1) pin_load=(taskset -c 0)
else
    pin_proxy=() pin_load=()
fi

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
echo '{"routes": []}' >"$tmp/config.json"
admin_port="$(port)"
proxy_port="$(port)"
RUST_LOG=warn "${pin_proxy[@]}" "$ROUTERD_BIN" --config "$tmp/config.json" \
    --listen "127.0.0.1:$proxy_port" --admin "127.0.0.1:$admin_port" --plugins "$tmp/plugins" \
    --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

"${pin_load[@]}" python3 - "$ROUTES" "$CHANGES" "$admin_port" "$pid" "$proxy_port" "$RATE" \
    "$SUSTAIN" "$CONNS" <<'PY'
import http.client, json, os, re, statistics, subprocess, sys, threading, time, urllib.request
n, changes, port, pid, proxy_port, rate, sustain, conns = sys.argv[1:]
n, changes, rate, sustain = int(n), int(changes), int(rate), int(sustain)
base = f"http://127.0.0.1:{port}/api/v1"

def cpu_ms():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def route(i, target_port=9):
    return {"name": f"svc{i}", "target_url": f"http://127.0.0.1:{target_port}",
            "matchers": [{"condition": "path", "pattern": f"/svc{i}/{{id}}"},
                         {"condition": "method", "pattern": "GET"}]}

PROBE = {"name": "probe", "matchers": [{"condition": "path", "pattern": "/probe/{id}"},
                                       {"condition": "method", "pattern": "GET"}],
         "filters": [{"name": "respond", "args": ["200", "ok {id}\n"]}]}

def send(method, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        status = r.status
    took = (time.perf_counter() - start) * 1000
    assert status in (200, 201), status
    return took

idle = rss_mb()
apply_ms = send("POST", "/routes/apply", {"routes": [route(i) for i in range(n)] + [PROBE]})
applied = rss_mb()
cpu_before = cpu_ms()
each = [send("POST", "/routes", route(n + k)) for k in range(changes)]
cpu_each = (cpu_ms() - cpu_before) / max(changes, 1)
after = rss_mb()
print(f"routes: {n}; apply: {apply_ms:.1f} ms")
if each:
    print("single creates (ms): " + " ".join(f"{t:.1f}" for t in each))
    print(f"single create median: {statistics.median(each):.1f} ms, min {min(each):.1f}, max {max(each):.1f}; "
          f"routerd's CPU per create: {cpu_each:.2f} ms")
print(f"RSS: idle {idle:.1f} MB, after apply {applied:.1f} MB "
      f"({(applied - idle) * 1024 * 1024 / n:.0f} bytes/route), after {changes} creates {after:.1f} MB")
if sustain <= 0:
    sys.exit(0)

def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]

def wrk():
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{sustain}s", "--latency",
                          f"http://127.0.0.1:{proxy_port}/probe/7"],
                         capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx|Socket errors", out):
        sys.exit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    return rps, p50, p99

subprocess.run(["wrk", "-t1", f"-c{conns}", "-d1s", f"http://127.0.0.1:{proxy_port}/probe/7"],
               capture_output=True, check=True)
quiet = wrk()
latencies = []
# The updates, encoded before the run, sent over one kept-alive connection: the client shares
# its CPU with wrk and should take as little of it as it can.
bodies = [(f"/api/v1/routes/svc{k % n}", json.dumps(route(k % n, 10 + k % 50000)).encode())
          for k in range(rate * sustain)]
def change_loop():
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    # One update every 1/rate seconds, on a fixed schedule (a late one does not shift the rest).
    start = time.perf_counter()
    for k, (path, body) in enumerate(bodies):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        conn.request("PUT", path, body=body, headers={"content-type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            sys.exit(f"update {path}: {answer.status}")
        latencies.append((time.perf_counter() - sent) * 1000)
    latencies.append(time.perf_counter() - start)
changer = threading.Thread(target=change_loop)
changer.start()
busy = wrk()
changer.join()
took = latencies.pop()
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
print(f"sustained, wrk -t1 -c{conns} -d{sustain}s on /probe/{{id}}:")
print(f"  quiet:                  {quiet[0]:9.0f} rps  p50 {quiet[1]:.3f} ms  p99 {quiet[2]:.3f} ms")
print(f"  {len(latencies)} changes at {len(latencies) / took:.0f}/s: {busy[0]:9.0f} rps  "
      f"p50 {busy[1]:.3f} ms  p99 {busy[2]:.3f} ms  "
      f"(rps {busy[0] / quiet[0]:.2f}x, p99 {busy[2] / quiet[2]:.2f}x of quiet)")
print(f"  change latency: median {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {latencies[-1]:.1f} ms")
print(f"  RSS after: {rss_mb():.1f} MB")
PY
