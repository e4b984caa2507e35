#!/bin/sh
# A reproducible static build: no cgo, no build paths or build ID in the binary, same bytes every time.
set -eu
mkdir -p dist
go build -trimpath -ldflags='-s -w -buildid=' -o dist/static-image .
echo "built dist/static-image"
