#!/usr/bin/env bash
# routerd against nginx, HAProxy and Caddy as reverse proxies, side by side, in front of the same
# nginx `return 200` backend, with wrk on 127.0.0.1.
#
#   bash tests/bench/e2e.sh                     # 3 rounds, 5 s per run, 8/32/256 connections
#   ROUNDS=5 DURATION=10 CONNS="32" bash tests/bench/e2e.sh
#   SMOKE=1 bash tests/bench/e2e.sh             # one 1 s round at 32 connections: proves the script
#
# Setups, each started fresh for its run and stopped after it:
#   nginx             nginx proxy: 1 worker, upstream keepalive 64, proxy_http_version 1.1, no log
#   nginx-njs         the same, plus an njs check of `X-Bench: yes` (what the predicate does)
#   haproxy           HAProxy (Debian's package) as a peer: one thread, `http-reuse always`
#                     (idle backend connections shared), keep-alive both ways, no log
#   caddy             Caddy (Debian's package, Go) as a peer: `reverse_proxy` with its default
#                     keep-alive pool, admin endpoint and automatic HTTPS off, no access log;
#                     pinned, Go sizes GOMAXPROCS to the one CPU it is given
#   hyper-bare        routerd's stack with nothing of routerd (host/examples/bare_proxy.rs): the
#                     floor for any proxy built on hyper + tokio; BARE_BIN=PATH overrides it
#   hyper-conn        the same with hyper's low-level client (`conn::http1`, a thread-local list
#                     of idle backend connections; host/examples/bare_conn_proxy.rs), the
#                     smallest proxy the stack allows; CONN_BIN=PATH overrides it
#   routerd           one `path_prefix /` route
#   routerd-1k-8m     the same route with 8 header/method/query matchers, among 1,000 routes
#   routerd-3ep       the route over three endpoints (round robin; the backend listens on three
#                     ports), against `routerd`: the cost of balancing
#   routerd-trace     `routerd` with tracing at 100% (--otlp-endpoint: the backend nginx takes
#                     the exports), against `routerd`: what tracing costs when every request
#                     is sampled; routerd-trace-0 at ratio 0 (trace context passed on, no span)
#   routerd-nosample  `routerd` with the request sample off (--sample-every 0), against
#                     `routerd` (one head in 100 kept): what sampling costs at its default;
#                     routerd-sample-all keeps every head (--sample-every 1). Not in SETUPS
#                     unless named.
#   routerd-wasm      the route with the `header-eq` Wasm predicate (X-Bench: yes)
#   routerd-wasm-f    the predicate plus the `add-headers` Wasm filter (one response header)
#   routerd-wasm-shadow  routerd-wasm with a shadow version of the predicate (the same build)
#                     loaded through the admin API: every call also queued for the shadow and
#                     compared on the shadow's CPU budget (SHADOW_BUDGET percent of one core,
#                     default 5), against routerd-wasm. Not in SETUPS unless named.
# wrk sends `X-Bench: yes` and `?q=1` to every setup alike. BASE_BIN=PATH adds `routerd-base`:
# the native route served by another routerd binary, for before/after comparisons in one run.
#
# Runs alternate (every setup once per round, in order, ROUNDS rounds) and each figure is the
# median of its rounds. CPU per request is the proxy's user + system time over the run (from
# /proc/PID/stat, all its threads or worker processes) divided by the requests wrk counted.
#
# Pinning on 2 or more CPUs: the proxy under test (every thread of routerd, or nginx's master and
# worker) runs on CPU 1; the backend nginx and wrk share CPU 0. So each proxy gets one core, as
# nginx's one worker uses; routerd (`--workers auto`) then starts one worker. With one CPU nothing
# is pinned. Override with PROXY_CPUS / LOAD_CPUS (taskset lists).
#
# Output: a table (rps, p50, p99, CPU µs/request and the ratios to nginx at the same connection
# count), OUT/results.tsv and OUT/e2e.png (rps and p99 per setup; gnuplot). OUT defaults to
# target/e2e. Installs nginx, its njs module, HAProxy, Caddy, wrk and gnuplot with apt-get when
# missing. Binds only 127.0.0.1; every wrk run has a fixed duration.
set -euo pipefail
cd "$(dirname "$0")/../.."

SMOKE="${SMOKE:-}"
if [[ -n "$SMOKE" ]]; then
    ROUNDS="${ROUNDS:-1}" DURATION="${DURATION:-1}" CONNS="${CONNS:-32}" WARMUP="${WARMUP:-0}"
fi
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-8 32 256}"
WARMUP="${WARMUP:-1}"
OUT="${OUT:-target/e2e}"
SETUPS="${SETUPS:-nginx nginx-njs haproxy caddy hyper-bare hyper-conn routerd routerd-3ep routerd-1k-8m routerd-wasm routerd-wasm-f}"
[[ -z "${BASE_BIN:-}" || " $SETUPS " == *" routerd-base "* ]] || SETUPS="$SETUPS routerd-base"
NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so

missing=()
command -v nginx >/dev/null || missing+=(nginx)
[[ -f "$NJS_MODULE" ]] || missing+=(libnginx-mod-http-js)
command -v wrk >/dev/null || missing+=(wrk)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v taskset >/dev/null || missing+=(util-linux)
[[ " $SETUPS " != *" haproxy "* ]] || command -v haproxy >/dev/null || missing+=(haproxy)
[[ " $SETUPS " != *" caddy "* ]] || command -v caddy >/dev/null || missing+=(caddy)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# routerd is built with the `dist` profile, what users run (fat LTO; slow to build), unless
# PROFILE names another (`release`). ROUTERD_BIN lets the smoke run reuse the test suite's debug
# build (its figures mean nothing); the bare proxies are then built as debug too.
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    PROFILE="${PROFILE:-dist}"
    cargo build --profile "$PROFILE" --quiet --bin routerd
    ROUTERD_BIN="target/$PROFILE/routerd"
else
    PROFILE="${PROFILE:-dev}"
fi
# The bare proxies (host/examples/), built with routerd's profile: prints the binary's path.
example() {
    cargo build --profile "$PROFILE" --quiet --example "$1"
    local dir="$PROFILE"
    [[ "$dir" != dev ]] || dir=debug
    echo "target/$dir/examples/$1"
}
if [[ -z "${BARE_BIN:-}" && " $SETUPS " == *" hyper-bare "* ]]; then
    BARE_BIN="$(example bare_proxy)"
fi
if [[ -z "${CONN_BIN:-}" && " $SETUPS " == *" hyper-conn "* ]]; then
    CONN_BIN="$(example bare_conn_proxy)"
fi
[[ -f plugins/dist/header-eq.wasm && -f plugins/dist/add-headers.wasm ]] ||
    bash plugins/build.sh >/dev/null 2>&1

if (($(nproc) >= 2)); then
    PROXY_CPUS="${PROXY_CPUS:-1}" LOAD_CPUS="${LOAD_CPUS:-0}"
    pin_proxy=(taskset -c "$PROXY_CPUS") pin_load=(taskset -c "$LOAD_CPUS")
else
    pin_proxy=() pin_load=()
fi

mkdir -p "$OUT"
tmp="$(mktemp -d)"
chmod 755 "$tmp" # nginx's workers run as nobody when started by root
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

. tests/bench/common.sh

backend_port="$(port)"
backend_port2="$(port)"
backend_port3="$(port)"
nginx_conf "$tmp/backend" "server { listen 127.0.0.1:$backend_port; listen 127.0.0.1:$backend_port2;
    listen 127.0.0.1:$backend_port3; location / { return 200 \"ok\n\"; } }"
"${pin_load[@]}" nginx -c "$tmp/backend/nginx.conf" -e "$tmp/backend/error.log" &
pids+=($!)

proxy_port="$(port)"
upstream="upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }"
location="proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"
nginx_conf "$tmp/nginx" "$upstream server { listen 127.0.0.1:$proxy_port; location / { $location } }"
cat >"$tmp/check.js" <<'EOF'
// What the header-eq predicate does: the request goes on only with `X-Bench: yes`.
function ok(r) {
    return r.headersIn['X-Bench'] === 'yes' ? '1' : '0';
}
export default { ok };
EOF
nginx_conf "$tmp/nginx-njs" "js_import check from $tmp/check.js; js_set \$bench_ok check.ok;
    $upstream server { listen 127.0.0.1:$proxy_port;
        location / { if (\$bench_ok != \"1\") { return 404; } $location } }" \
    "load_module $NJS_MODULE;"

# The peers. HAProxy: one thread (nginx has one worker), its default `option http-keep-alive`.
mkdir -p "$tmp/haproxy"
cat >"$tmp/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend proxy
    bind 127.0.0.1:$proxy_port
    default_backend backend
backend backend
    http-reuse always
    server b1 127.0.0.1:$backend_port
EOF
# Caddy: keeps its state in the setup's dir, not under $HOME.
mkdir -p "$tmp/caddy"
cat >"$tmp/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
    storage file_system $tmp/caddy/storage
}
http://127.0.0.1:$proxy_port {
    reverse_proxy 127.0.0.1:$backend_port
}
EOF

# routerd configs.
target="\"target_url\": \"http://127.0.0.1:$backend_port\""
routerd_dir() { mkdir -p "$tmp/$1/plugins" "$tmp/$1/data"; }
routerd_dir routerd
echo "{\"routes\": [{\"name\": \"all\", \"matchers\": [{\"condition\": \"path_prefix\", \"pattern\": \"/\"}], $target}]}" \
    >"$tmp/routerd/config.json"
routerd_dir routerd-base
cp "$tmp/routerd/config.json" "$tmp/routerd-base/config.json"
for setup in routerd-trace routerd-trace-0 routerd-nosample routerd-sample-all; do
    routerd_dir "$setup"
    cp "$tmp/routerd/config.json" "$tmp/$setup/config.json"
done
routerd_dir routerd-3ep
echo "{\"routes\": [{\"name\": \"all\", \"matchers\": [{\"condition\": \"path_prefix\", \"pattern\": \"/\"}],
  \"targets\": [{\"url\": \"http://127.0.0.1:$backend_port\"}, {\"url\": \"http://127.0.0.1:$backend_port2\"},
  {\"url\": \"http://127.0.0.1:$backend_port3\"}]}]}" >"$tmp/routerd-3ep/config.json"
routerd_dir routerd-1k-8m
python3 - "$tmp/routerd-1k-8m/config.json" "$backend_port" <<'EOF'
import json, sys
path, port = sys.argv[1], sys.argv[2]
target = f"http://127.0.0.1:{port}"
routes = []
# 999 other routes: static, parameter and prefix paths, some with their own matchers.
for i in range(999):
    kind = i % 3
    pattern = [f"/api/v{i % 7}/svc{i}/items", f"/svc{i}/{{id}}/detail", f"/static{i}"][kind]
    cond = "path_prefix" if kind == 2 else "path"
    m = [{"condition": cond, "pattern": pattern}]
    if i % 2:
        m.append({"condition": "method", "pattern": "GET|POST"})
    routes.append({"name": f"r{i}", "matchers": m, "target_url": target})
# The measured route: the catch-all prefix and 8 header/method/query matchers that all match.
routes.append({"name": "all", "target_url": target, "matchers": [
    {"condition": "path_prefix", "pattern": "/"},
    {"condition": "method", "pattern": "GET|HEAD"},
    {"condition": "header", "field": "X-Bench", "pattern": "yes"},
    {"condition": "header", "field": "Host", "pattern": "^127\\.0\\.0\\.1", "is_regex": True},
    {"condition": "header", "field": "X-Bench", "pattern": "s$", "is_regex": True},
    {"condition": "query_param", "field": "q", "pattern": "1"},
    {"condition": "host", "pattern": "127.0.0.1"},
    {"condition": "remote_addr", "pattern": "127.0.0.0/8, ::1"},
    {"condition": "header", "field": "X-Bench", "pattern": "^y", "is_regex": True},
]})
json.dump({"routes": routes}, open(path, "w"))
EOF
predicate='{"condition": "plugin", "plugin": "header-eq", "args": ["X-Bench", "yes"]}'
for setup in routerd-wasm routerd-wasm-f routerd-wasm-shadow; do
    routerd_dir "$setup"
    cp plugins/dist/header-eq.wasm plugins/dist/add-headers.wasm "$tmp/$setup/plugins/"
done
echo "{\"routes\": [{\"name\": \"all\", \"matchers\": [{\"condition\": \"path_prefix\", \"pattern\": \"/\"}, $predicate], $target}]}" \
    >"$tmp/routerd-wasm/config.json"
cp "$tmp/routerd-wasm/config.json" "$tmp/routerd-wasm-shadow/config.json"
admin_port="$(port)"
echo "{\"routes\": [{\"name\": \"all\", \"matchers\": [{\"condition\": \"path_prefix\", \"pattern\": \"/\"}, $predicate], $target,
  \"filters\": [{\"plugin\": \"add-headers\", \"args\": [\"resp:X-Bench\", \"yes\"]}]}]}" \
    >"$tmp/routerd-wasm-f/config.json"

url="http://127.0.0.1:$proxy_port/bench?q=1"
proxy_pid=""
start_proxy() {
    local setup="$1"
    case "$setup" in
    nginx*)
        "${pin_proxy[@]}" nginx -c "$tmp/$setup/nginx.conf" -e "$tmp/$setup/error.log" &
        ;;
    haproxy)
        "${pin_proxy[@]}" haproxy -db -f "$tmp/haproxy/haproxy.cfg" >>"$tmp/haproxy/log" 2>&1 &
        ;;
    caddy)
        XDG_DATA_HOME="$tmp/caddy" XDG_CONFIG_HOME="$tmp/caddy" "${pin_proxy[@]}" \
            caddy run --adapter caddyfile --config "$tmp/caddy/Caddyfile" >>"$tmp/caddy/log" 2>&1 &
        ;;
    hyper-bare)
        "${pin_proxy[@]}" "$BARE_BIN" "127.0.0.1:$proxy_port" "127.0.0.1:$backend_port" &
        ;;
    hyper-conn)
        "${pin_proxy[@]}" "$CONN_BIN" "127.0.0.1:$proxy_port" "127.0.0.1:$backend_port" &
        ;;
    routerd*)
        local bin="$ROUTERD_BIN" extra=()
        [[ "$setup" != routerd-base ]] || bin="$BASE_BIN"
        case "$setup" in
        routerd-trace) extra=(--otlp-endpoint "http://127.0.0.1:$backend_port/v1/traces") ;;
        routerd-trace-0) extra=(--otlp-endpoint "http://127.0.0.1:$backend_port/v1/traces"
            --trace-sample-ratio 0) ;;
        routerd-nosample) extra=(--sample-every 0) ;;
        routerd-sample-all) extra=(--sample-every 1) ;;
        esac
        RUST_LOG=warn "${pin_proxy[@]}" "$bin" --config "$tmp/$setup/config.json" "${extra[@]}" \
            --listen "127.0.0.1:$proxy_port" --admin "127.0.0.1:$admin_port" \
            --plugins "$tmp/$setup/plugins" --data "$tmp/$setup/data" >>"$tmp/$setup/log" 2>&1 &
        ;;
    esac
    proxy_pid=$!
    pids+=("$proxy_pid")
    local body=""
    for _ in $(seq 300); do
        if body="$(curl -s -H 'X-Bench: yes' "$url" 2>/dev/null)" && [[ "$body" == ok ]]; then
            [[ "$setup" != routerd-wasm-shadow ]] || curl -sf -o /dev/null -X POST \
                "http://127.0.0.1:$admin_port/api/v1/plugins?name=header-eq&shadow=true&budget=${SHADOW_BUDGET:-5}" \
                --data-binary @plugins/dist/header-eq.wasm
            return 0
        fi
        sleep 0.1
    done
    echo "e2e: $setup does not answer through $url (got: $body)" >&2
    cat "$tmp/$setup/"*log* >&2 || true
    exit 1
}
stop_proxy() {
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    # Wait until the port is free for the next setup.
    for _ in $(seq 100); do
        curl -s -o /dev/null "$url" 2>/dev/null || break
        sleep 0.05
    done
}

# The CPU ticks of a process and its children processes (nginx's worker): "USER SYSTEM".
ticks() {
    local user=0 sys=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
        local rest
        rest="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null)" || continue
        user=$((user + $(awk '{print $12}' <<<"$rest")))
        sys=$((sys + $(awk '{print $13}' <<<"$rest")))
    done
    echo "$user $sys"
}
HZ="$(getconf CLK_TCK)"

# wrk latency ("850.00us", "1.20ms", "1.01s") in ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' <<<"$1"; }

results="$OUT/results.tsv"
: >"$tmp/runs.tsv"
echo "e2e: wrk -t1 -d${DURATION}s, connections: $CONNS, rounds: $ROUNDS, $(nproc) CPUs," \
    "proxy on CPU ${PROXY_CPUS:-any}, backend and wrk on CPU ${LOAD_CPUS:-any}; $ROUTERD_BIN"
for round in $(seq "$ROUNDS"); do
    for setup in $SETUPS; do
        start_proxy "$setup"
        for c in $CONNS; do
            ((WARMUP == 0)) || "${pin_load[@]}" wrk -t1 -c"$c" -d"${WARMUP}s" -H 'X-Bench: yes' "$url" >/dev/null
            read -r user0 sys0 < <(ticks "$proxy_pid")
            out="$("${pin_load[@]}" wrk -t1 -c"$c" -d"${DURATION}s" --latency -H 'X-Bench: yes' "$url")"
            read -r user1 sys1 < <(ticks "$proxy_pid")
            requests="$(awk '/requests in/ {print $1}' <<<"$out")"
            rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
            p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
            p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
            errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")"
            if [[ -n "$errors" ]]; then
                echo "e2e: $setup at $c connections: $errors" >&2
                exit 1
            fi
            user_us="$(echo "($user1 - $user0) * 1000000 / $HZ / $requests" | bc -l)"
            sys_us="$(echo "($sys1 - $sys0) * 1000000 / $HZ / $requests" | bc -l)"
            cpu_us="$(echo "$user_us + $sys_us" | bc -l)"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\n' "$round" "$setup" "$c" "$rps" "$p50" "$p99" "$cpu_us" "$user_us" "$sys_us" >>"$tmp/runs.tsv"
            printf '  round %s %-15s c=%-4s %9.0f rps  p50 %7.3f ms  p99 %7.3f ms  %6.2f µs CPU/req (user %.2f, system %.2f)\n' \
                "$round" "$setup" "$c" "$rps" "$p50" "$p99" "$cpu_us" "$user_us" "$sys_us"
        done
        stop_proxy
    done
done

# Medians per setup and connection count, and the ratios to nginx.
python3 - "$tmp/runs.tsv" "$results" "$SETUPS" <<'EOF'
import statistics, sys
runs, out, order = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = {}
for line in open(runs):
    _, setup, c, rps, p50, p99, cpu, user, sys_ = line.split("\t")
    rows.setdefault((setup, int(c)), []).append(
        (float(rps), float(p50), float(p99), float(cpu), float(user), float(sys_)))
med = {k: [statistics.median(x[i] for x in v) for i in range(6)] for k, v in rows.items()}
conns = sorted({c for _, c in med})
with open(out, "w") as f:
    f.write("setup\tconnections\trps\tp50_ms\tp99_ms\tcpu_us_per_req\trps_vs_nginx\tcpu_vs_nginx\tp99_vs_nginx\tuser_us_per_req\tsys_us_per_req\n")
    print(f"\nmedians of {len(next(iter(rows.values())))} rounds")
    print(f"{'setup':16} {'conns':>5} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}"
          f" {'user':>6} {'system':>6} {'rps/nginx':>10} {'CPU/nginx':>10} {'p99/nginx':>10}")
    for c in conns:
        base = med.get(("nginx", c))
        for s in order:
            if (s, c) not in med:
                continue
            rps, p50, p99, cpu, user, sys_ = med[(s, c)]
            r = [rps / base[0], cpu / base[3], p99 / base[2]] if base else [float("nan")] * 3
            f.write(f"{s}\t{c}\t{rps:.0f}\t{p50:.3f}\t{p99:.3f}\t{cpu:.2f}\t{r[0]:.3f}\t{r[1]:.3f}\t{r[2]:.3f}\t{user:.2f}\t{sys_:.2f}\n")
            print(f"{s:16} {c:>5} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f} {cpu:>11.2f} {user:>6.2f} {sys_:>6.2f}"
                  f" {r[0]:>9.2f}x {r[1]:>9.2f}x {r[2]:>9.2f}x")
    # Wasm setups against routerd native, the issue's second ratio.
    for c in conns:
        native = med.get(("routerd", c))
        for s in ("hyper-bare", "hyper-conn", "routerd-base", "routerd-trace", "routerd-trace-0", "routerd-nosample", "routerd-sample-all", "routerd-3ep", "routerd-1k-8m", "routerd-wasm", "routerd-wasm-f", "routerd-wasm-shadow"):
            if native and (s, c) in med:
                print(f"{s} vs routerd at c={c}: {med[(s, c)][0] / native[0]:.2f}x rps")
EOF

# The chart: rps (left) and p99 (right) per setup, one bar per connection count.
python3 - "$results" "$tmp/chart.dat" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
setups = list(dict.fromkeys(r[0] for r in rows))
conns = list(dict.fromkeys(r[1] for r in rows))
val = {(r[0], r[1]): (r[2], r[4]) for r in rows}
with open(sys.argv[2], "w") as f:
    f.write("setup " + " ".join(f"rps{c} p99_{c}" for c in conns) + "\n")
    for s in setups:
        f.write(s + " " + " ".join(" ".join(val.get((s, c), ("0", "0"))) for c in conns) + "\n")
EOF
ncols="$(echo $CONNS | wc -w)"
gnuplot <<EOF
set terminal pngcairo size 1400,560 font "sans,10"
set output "$OUT/e2e.png"
set multiplot layout 1,2 title "routerd vs nginx, HAProxy and Caddy as reverse proxies ($(nproc) CPUs, wrk -t1 -d${DURATION}s, median of $ROUNDS)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set key top right
set grid ytics
set yrange [0:*]
set termoption noenhanced
conns = "$CONNS"
set ylabel "requests/s"
set title "throughput"
plot for [i=1:$ncols] "$tmp/chart.dat" using 2*i:xtic(1) title sprintf("%s connections", word(conns, i))
set ylabel "p99 latency (ms)"
set title "p99 latency"
plot for [i=1:$ncols] "$tmp/chart.dat" using 2*i+1:xtic(1) title sprintf("%s connections", word(conns, i))
unset multiplot
EOF
echo "e2e: wrote $results and $OUT/e2e.png"
