#!/bin/sh
# Installs the Debian packages the build and tests need, if missing (as root, or through sudo):
# BLAS/LAPACKE, zlib, nettle; clang for the sanitizer build; an AArch64 cross compiler and qemu-user
# for the NEON kernel tests.
set -e
need=""
for p in libopenblas-dev liblapacke-dev zlib1g-dev nettle-dev clang gcc-aarch64-linux-gnu qemu-user; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
[ -z "$need" ] && exit 0
echo "installing:$need" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
