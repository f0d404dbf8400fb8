#!/usr/bin/env bash
# Builds the Debian package: target/debian/herald_VERSION_ARCH.deb
#
#   scripts/build-deb.sh            (SKIP_BUILD=1: use target/release/herald as it is)
#
# It holds the binary (/usr/bin/herald), a man page for herald and for each
# command (made from the CLI definition by examples/gen_assets.rs), bash, zsh
# and fish completions, the example settings, list and post and the README
# under /usr/share/doc/herald, and the systemd units from packaging/systemd
# (herald-serve.service, herald-send.service + herald-send.timer). The
# `herald` system user is made by packaging/debian/postinst. Needs dpkg-deb,
# gzip and objdump (binutils); prints the package's path on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(grep -m1 '^version = "' Cargo.toml | sed 's/^version = "\(.*\)"$/\1/')
arch=$(dpkg --print-architecture)
if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo build --release --locked >&2
fi
bin=target/release/herald
[[ -x $bin ]] || { echo "build-deb: $bin is missing; build it first" >&2; exit 1; }

stage=target/debian/herald_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

install -D -m 0755 "$bin" "$stage/usr/bin/herald"
strip --strip-unneeded "$stage/usr/bin/herald" 2>/dev/null || true

assets=$(mktemp -d)
trap 'rm -rf "$assets"' EXIT
cargo run --release --locked --quiet --example gen_assets -- "$assets" >&2
install -d "$stage/usr/share/man/man1"
for page in "$assets"/man/*.1; do
    gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$assets/completions/herald.bash" "$stage/usr/share/bash-completion/completions/herald"
install -D -m 0644 "$assets/completions/_herald" "$stage/usr/share/zsh/vendor-completions/_herald"
install -D -m 0644 "$assets/completions/herald.fish" "$stage/usr/share/fish/vendor_completions.d/herald.fish"

doc=$stage/usr/share/doc/herald
install -D -m 0644 herald.example.yaml "$doc/herald.example.yaml"
install -D -m 0644 subscribers.example.csv "$doc/subscribers.example.csv"
install -D -m 0644 examples/inside-open-infrastructure-example.md "$doc/inside-open-infrastructure-example.md"
install -D -m 0644 README.md "$doc/README.md"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: herald
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

for unit in packaging/systemd/*; do
    install -D -m 0644 "$unit" "$stage/usr/lib/systemd/system/$(basename "$unit")"
done
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done

# The oldest C library the binary runs on: the newest GLIBC_x.y symbol it uses.
glibc=$(objdump -T "$stage/usr/bin/herald" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: herald
Version: $version
Architecture: $arch
Maintainer: OpenInfra Foundation newsletter team <newsletter@openinfra.org>
Installed-Size: $size
Depends: libc6 (>= $glibc), libgcc-s1, adduser
Section: mail
Priority: optional
Homepage: https://openinfra.org
Description: turns the monthly newsletter post into an email and sends it
 herald composes the OpenInfra Foundation's "Inside Open Infrastructure"
 post (Markdown with YAML front matter) into a responsive email with a
 plain-text part, and sends it to a subscriber list over SMTP in throttled
 batches, resumable after any crash and safe to run from cron or a systemd
 timer. It answers unsubscribes (herald serve) and reads bounces.
CONTROL

deb=target/debian/herald_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
