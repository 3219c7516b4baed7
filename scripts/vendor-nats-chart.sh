#!/usr/bin/env bash
# Copies the official NATS Helm chart (helm/charts/nats of the nats-io/k8s repository) at one
# release tag into deploy/nats/chart, so that installing NATS and testing its configuration need
# no chart repository and no internet. The chart is copied unchanged; its README, upgrade notes
# and Go tests are left out, its LICENSE (Apache-2.0, at the root of that repository) is added.
#
#   scripts/vendor-nats-chart.sh <nats-io/k8s clone or bare git dir> [tag]   # tag: nats-2.14.2
#
# Afterwards: `make nats-conf` (re-renders test/fixtures/nats-chart.conf) and the deploy tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${1:?usage: $0 <nats-io/k8s git dir> [tag]}"
tag="${2:-nats-2.14.2}"
dest="$repo/deploy/nats/chart"
git=(git --git-dir "$src")
[[ -d "$src/.git" ]] && git=(git -C "$src")

commit="$("${git[@]}" rev-parse --verify "$tag^{commit}")"
version="$("${git[@]}" show "$commit:helm/charts/nats/Chart.yaml" | sed -n 's/^version: *//p')"
[[ "nats-$version" == "$tag" ]] || { echo "tag $tag holds chart version $version" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${git[@]}" archive "$commit" helm/charts/nats LICENSE | tar -x -C "$tmp"
chart="$tmp/helm/charts/nats"
rm -rf "$chart/README.md" "$chart/UPGRADING.md" "$chart/test"
mv "$tmp/LICENSE" "$chart/LICENSE"
cat >"$chart/SOURCE" <<EOF
The official NATS Helm chart $version, unchanged: helm/charts/nats of the nats-io/k8s repository
at tag $tag (commit $commit), without its README.md, UPGRADING.md and test/ (Go tests of the
chart). LICENSE is that repository's (Apache License 2.0). Copied by scripts/vendor-nats-chart.sh;
do not edit: Torii's settings are in deploy/nats/values.yaml.
EOF
rm -rf "$dest"
mv "$chart" "$dest"
echo "deploy/nats/chart: NATS chart $version ($tag, $commit)"
