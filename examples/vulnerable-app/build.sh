#!/bin/sh
# A reproducible build: the same sources always give the same archive, byte for byte.
set -eu
mkdir -p dist
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf dist/vulnerable-app.tar package.json package-lock.json src
echo "built dist/vulnerable-app.tar"
