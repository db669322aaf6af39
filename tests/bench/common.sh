# What the benchmark scripts share; each sources it after changing to the repository root
# (`. tests/bench/common.sh`).

# A free TCP port on 127.0.0.1, for a server that must be told its port. It is taken below the
# kernel's ephemeral range: a port the kernel handed out for `:0` is soon reused as the local end
# of an outgoing connection, and the server then fails with "address already in use". Ports
# handed out are remembered in the script's `$tmp` dir, so two calls never give the same one.
port() {
    python3 - "${tmp:?the script makes \$tmp before asking for ports}/ports-given" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
path = sys.argv[1]
try:
    given = {int(p) for p in open(path).read().split()}
except OSError:
    given = set()
for _ in range(2000):
    p = random.randrange(10000, low)
    if p in given:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    with open(path, "a") as f:
        f.write(f"{p}\n")
    print(p)
    sys.exit(0)
sys.exit(f"no free port between 10000 and {low}")
PY
}

# Writes DIR/nginx.conf for one nginx worker in the foreground that keeps its files in DIR:
# $1 = DIR, $2 = the http block's contents (server and upstream blocks), $3 = extra top-level
# lines. Start it with `nginx -c DIR/nginx.conf -e DIR/error.log`.
nginx_conf() {
    local dir="$1" http="$2" top="${3:-}"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
$top
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    $http
}
EOF
}
