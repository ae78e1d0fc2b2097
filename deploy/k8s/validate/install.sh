#!/bin/sh
# Installs the schema check's two npm packages (versions pinned in
# package-lock.json) where tests/deploy looks for them: DIR, else
# $WCODEC_K8S_VALIDATE, else ${XDG_CACHE_HOME:-~/.cache}/wcodec/k8s-validate
# (outside the source tree: ~50 MB that no build or device run should carry).
# Needs npm and the npm registry once; the check itself runs offline.
# usage: deploy/k8s/validate/install.sh [DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${WCODEC_K8S_VALIDATE:-${XDG_CACHE_HOME:-$HOME/.cache}/wcodec/k8s-validate}}
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
cd "$dir"
npm ci --no-audit --no-fund --ignore-scripts
echo "installed in $(pwd)"
