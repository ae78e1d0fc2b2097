#!/bin/sh
# Installs the schema check's two npm packages (versions pinned in
# package-lock.json) into .devdeps/k8s-validate at the top of the source
# tree (git-ignored), where tests/deploy looks for them. Needs npm and the
# npm registry once; the check itself runs offline.
# usage: deploy/k8s/validate/install.sh [DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../../../.devdeps/k8s-validate}
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
cd "$dir"
npm ci --no-audit --no-fund --ignore-scripts
echo "installed in $(pwd)"
