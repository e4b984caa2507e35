#!/bin/sh
# Makes the Node service's base image: a minimal root file system holding this host's node binary
# and the shared libraries it loads (nothing else: no shell, no package manager), imported into
# the image store of a gatehouse home. Prints the digest to pin in gatehouse.yaml (image.base.store).
#   usage: make-base.sh [--home DIR]
set -eu
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
node=$(readlink -f "$(command -v node)")
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
cp "$node" "$root/usr/local/bin/node"
for lib in $(ldd "$node" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnode:x:1000:1000:node:/app:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
here=$(cd "$(dirname "$0")" && pwd)
"$here/../../bin/gatehouse" image import "$root" "$@"
