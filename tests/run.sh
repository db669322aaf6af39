#!/usr/bin/env bash
# The whole test suite: the guest plugins (built to wasm32-wasip2 for the integration tests, and
# their logic tested natively; the `lang` plugin also in JavaScript, Python, C, Go and WAT), the SDK with its doctests, then every host unit and integration
# test (which start real routerd processes against those plugins), built with the etcd store so the
# scale-out tests run against real etcd servers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash plugins/build.sh
# The same plugin in every other guest language (installs missing toolchains itself).
bash plugins/lang/build.sh
cargo test --manifest-path plugins/Cargo.toml --target-dir plugins/target/native
cargo test --manifest-path sdk/Cargo.toml --target-dir plugins/target/native
bash tests/system-deps.sh
cargo test --workspace --features routerd/etcd
