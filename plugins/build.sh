#!/usr/bin/env bash
# Builds every routerd plugin in this workspace into a WebAssembly component and copies it to
# dist/<dir-name>.wasm (e.g. dist/jwt-claim.wasm).
#
#   bash plugins/build.sh            # from anywhere
#
# Extra arguments are passed to cargo (e.g. `-j 1`). Used as is by tests/build.rs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# (Read the list first: `grep -q` closing a pipe early would trip pipefail.)
installed="$(rustup target list --installed)"
grep -qx wasm32-wasip2 <<<"$installed" || rustup target add wasm32-wasip2

cargo build --release --target wasm32-wasip2 "$@"

out="$here/target/wasm32-wasip2/release"
mkdir -p "$here/dist"
count=0
# Each member directory is one plugin; its package name equals the directory name.
for manifest in "$here"/*/Cargo.toml; do
    dir="$(basename "$(dirname "$manifest")")"
    artifact="$out/${dir//-/_}.wasm"
    if [[ ! -f "$artifact" ]]; then
        echo "build.sh: expected $artifact after the build" >&2
        exit 1
    fi
    # Copy to a temporary name and rename, so a reader never sees a half-written file.
    tmp="$here/dist/.$dir.wasm.$$"
    cp "$artifact" "$tmp"
    mv -f "$tmp" "$here/dist/$dir.wasm"
    count=$((count + 1))
done
echo "build.sh: $count plugins in $here/dist"
