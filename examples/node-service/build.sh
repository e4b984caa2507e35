#!/bin/sh
# The build lays out what goes into the image; gatehouse makes the image from dist/ afterwards.
set -eu
rm -rf dist
mkdir -p dist/app
cp package.json dist/app/
cp -R src dist/app/src
echo "built dist/app"
