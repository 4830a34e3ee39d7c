#!/bin/sh
# build.sh BINARY VERSION OUTDIR [ARCH]: builds OUTDIR/portier_<VERSION>_<ARCH>.deb
# with dpkg-deb (make deb). An empty VERSION is taken from git: the latest
# vX.Y.Z tag (commits since as +N.gHASH), else 0.0~gitDATE.HASH. The package holds the binary (/usr/bin/portier),
# the systemd unit (deploy/portier.service with the packaged paths and a
# `portier` system user instead of DynamicUser), /etc/portier/portier.yaml
# (deploy/portier.yaml, a conffile), a logrotate file that sends SIGUSR1,
# and maintainer scripts that create the user and, on purge, remove it.
set -eu
bin=$1 version=$2 out=$3 arch=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
[ -n "$arch" ] || arch=$(dpkg --print-architecture)
if [ -z "$version" ]; then
	version=$(git -C "$deploy" describe --tags --match 'v[0-9]*' 2>/dev/null | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/') || true
	[ -n "$version" ] || version="0.0~git$(git -C "$deploy" log -1 --format=%cd --date=format:%Y%m%d%H%M 2>/dev/null).$(git -C "$deploy" rev-parse --short HEAD 2>/dev/null)"
fi
case "$version" in
[0-9]*) ;;
*) echo "build.sh: version \"$version\" must start with a digit" >&2; exit 1 ;;
esac
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$bin" "$root/usr/bin/portier"
install -D -m 0644 "$deploy/portier.yaml" "$root/etc/portier/portier.yaml"
install -D -m 0644 "$here/logrotate" "$root/etc/logrotate.d/portier"
install -d -m 0755 "$root/lib/systemd/system"
sed -e 's#/usr/local/bin/portier#/usr/bin/portier#g' \
	-e 's#^DynamicUser=yes#User=portier\nGroup=portier#' \
	-e 's#^\# systemd unit for portier\. Install with `make install` (binary in#\# systemd unit for portier, from the Debian package (binary in#' \
	-e 's#^\# /usr/local/bin, config in /etc/portier/portier.yaml), then:#\# /usr/bin, config in /etc/portier/portier.yaml), then:#' \
	"$deploy/portier.service" >"$root/lib/systemd/system/portier.service"
grep -q '^User=portier$' "$root/lib/systemd/system/portier.service" || {
	echo "build.sh: deploy/portier.service has no DynamicUser=yes line to replace" >&2
	exit 1
}
install -D -m 0644 "$deploy/../README.md" "$root/usr/share/doc/portier/README.md"

install -d -m 0755 "$root/DEBIAN"
for f in postinst prerm postrm; do
	install -m 0755 "$here/$f" "$root/DEBIAN/$f"
done
printf '/etc/portier/portier.yaml\n/etc/logrotate.d/portier\n' >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: portier
Version: $version
Architecture: $arch
Maintainer: portier developers <portier@localhost>
Installed-Size: $size
Section: net
Priority: optional
Suggests: logrotate, redis-tools
Homepage: https://github.com/portier/portier
Description: reverse proxy routing HTTP by Host and TLS by SNI (passthrough)
 portier routes plain HTTP by the Host header and TLS by the ClientHello's SNI
 without decrypting it, to health-checked, load-balanced backend pools per
 host name, from a YAML file or from Redis. Backends learn the client address
 through PROXY protocol v1/v2 and X-Forwarded-For.
CONTROL
mkdir -p "$out"
deb="$out/portier_${version}_${arch}.deb"
# DEB_COMPRESS=gzip builds in seconds (the test uses it); xz is Debian's default.
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
