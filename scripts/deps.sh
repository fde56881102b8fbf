#!/bin/sh
# Installs the Debian packages the build needs, if missing (as root, or through sudo).
set -e
need=""
for p in libopenblas-dev liblapacke-dev zlib1g-dev nettle-dev clang; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
echo "installing:$need" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
