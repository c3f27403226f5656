#!/usr/bin/env bash
# Packaging checks for CI: build the .deb with cargo-deb, check what it installs, and verify the
# systemd unit where systemd-analyze is available.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked --version 3.8.0
fi
cargo deb --locked
deb=$(ls -t target/debian/*.deb | head -1)
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/herald ./lib/systemd/system/herald.service ./etc/herald/herald.toml; do
    grep -q " $path\$" <<<"$contents" || { echo "missing from $deb: $path"; exit 1; }
done
info=$(dpkg-deb -I "$deb")
grep -q "conffiles" <<<"$info" || { echo "no conffiles in $deb"; exit 1; }
dpkg-deb -I "$deb" conffiles | grep -qx "/etc/herald/herald.toml" || { echo "herald.toml is not a conffile"; exit 1; }
dpkg-deb -I "$deb" postinst | grep -q "adduser --system" || { echo "postinst does not create the user"; exit 1; }
echo "deb ok: $deb"

if command -v systemd-analyze >/dev/null; then
    # verify resolves ExecStart: point it at the binary just built.
    tmp=$(mktemp -d)
    sed "s|/usr/bin/herald|$PWD/target/release/herald|" packaging/herald.service > "$tmp/herald.service"
    systemd-analyze verify "$tmp/herald.service"
    echo "systemd unit ok"
fi
