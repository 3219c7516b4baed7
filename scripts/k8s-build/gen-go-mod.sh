#!/usr/bin/env bash
# Writes a Go module into DIR that requires k8s.io/kubernetes@VERSION and pins every staging
# module (listed at v0.0.0 in kubernetes' own go.mod) to the matching v0.MINOR.PATCH with
# `replace`, so that `go build k8s.io/kubernetes/cmd/kube-apiserver` works outside the k/k tree.
#
#   gen-go-mod.sh v1.34.4 /tmp/k8s-build
set -euo pipefail
version=${1:?usage: gen-go-mod.sh VERSION DIR}
dir=${2:?usage: gen-go-mod.sh VERSION DIR}
staging="v0.${version#v1.}"

gomod="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
[[ -f "$gomod" ]] || { echo "gen-go-mod: could not download k8s.io/kubernetes@$version" >&2; exit 1; }
goversion="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"

mkdir -p "$dir"
{
  echo "module torii.local/k8s-build"
  echo
  echo "go $goversion"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  # Staging modules appear as `k8s.io/<name> v0.0.0` in require blocks.
  grep -E '^\s+k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u |
    while read -r m; do echo "replace $m => $m $staging"; done
} >"$dir/go.mod"
cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
(cd "$dir" && go mod tidy >/dev/null)
