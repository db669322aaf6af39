#!/usr/bin/env bash
# Debian packages the etcd-backed build and its tests need: `protoc` (etcd-client generates its
# gRPC code at build time) and a real etcd server the cluster tests start on loopback ports; and
# the browser the dashboard's tests drive (chromium, through chromedriver).
# Installs only what is missing, so a machine that has both does nothing here.
set -euo pipefail

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
