# What the benchmark scripts share; each sources it after changing to the repository root
# (`. tests/bench/common.sh`).

# A free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
