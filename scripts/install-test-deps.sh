#!/bin/sh
# Installs the real peers calgate's tests run against: python3-caldav and
# vdirsyncer (clients), radicale and xandikos (upstream servers), and
# headless chromium (the status page in a real browser).
# Debian packages; needs root (or sudo) the first time only.
set -eu
pkgs="python3-caldav python3-icalendar vdirsyncer radicale xandikos curl chromium chromium-driver"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing test dependencies:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
