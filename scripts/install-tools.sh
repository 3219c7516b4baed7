#!/usr/bin/env bash
# Installs the external servers and CLIs Torii needs, idempotently, into a cache outside the
# repo (default ~/.cache/torii/tools) and links them into .tools/bin. Versions: scripts/tools.env.
#
#   scripts/install-tools.sh            # everything
#   scripts/install-tools.sh nats etcd  # only some: nats-server natscli livekit helm kube etcd chromium
#
# A tool that cannot be had stops the script with the exact command that failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=tools.env
source "$here/tools.env"

cache="${TORII_TOOLS_CACHE:-$HOME/.cache/torii/tools}"
bin="$repo/.tools/bin"
mkdir -p "$cache" "$bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() { printf '[install-tools] ERROR: %s\n' "$*" >&2; exit 1; }

run() {
  # Runs a command and, on failure, names it exactly.
  if ! "$@"; then die "command failed: $*"; fi
}

need_go() { command -v go >/dev/null || die "Go is required to build $1 (go not on PATH)"; }

# link NAME PATH: expose a cached binary as .tools/bin/NAME
link() { ln -sfn "$2" "$bin/$1"; }

go_install() { # name module version dest_dir
  local name=$1 module=$2 version=$3 dest=$4
  if [[ -x "$dest/$name" ]]; then link "$name" "$dest/$name"; return; fi
  need_go "$name"
  log "building $name $version (go install $module@$version)"
  mkdir -p "$dest.tmp"
  run env GOBIN="$dest.tmp" CGO_ENABLED=0 go install "$module@$version"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  link "$name" "$dest/$name"
}

install_nats_server() {
  go_install nats-server github.com/nats-io/nats-server/v2 "$NATS_SERVER_VERSION" "$cache/nats-server-$NATS_SERVER_VERSION"
}
install_natscli() {
  go_install nats github.com/nats-io/natscli/nats "$NATSCLI_VERSION" "$cache/natscli-$NATSCLI_VERSION"
}
# The module's command is cmd/server, so `go install` names the binary `server`; it is linked
# (and found by src/devtools/tools.ts) as livekit-server.
install_livekit_server() {
  local dest="$cache/livekit-server-$LIVEKIT_SERVER_VERSION"
  if [[ -x "$dest/livekit-server" ]]; then link livekit-server "$dest/livekit-server"; return; fi
  need_go livekit-server
  log "building livekit-server $LIVEKIT_SERVER_VERSION (go install, about a minute after the downloads)"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  run env GOBIN="$dest.tmp" CGO_ENABLED=0 go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
  mv "$dest.tmp/server" "$dest.tmp/livekit-server"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  link livekit-server "$dest/livekit-server"
}
install_helm() {
  go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$cache/helm-$HELM_VERSION"
}

install_kube() {
  local dest="$cache/kubernetes-$KUBERNETES_VERSION"
  if [[ -x "$dest/kube-apiserver" && -x "$dest/kubectl" ]]; then
    link kube-apiserver "$dest/kube-apiserver"; link kubectl "$dest/kubectl"; return
  fi
  need_go kube-apiserver
  local work="$cache/k8s-build-$KUBERNETES_VERSION"
  rm -rf "$work" && mkdir -p "$work"
  # go install k8s.io/kubernetes/cmd/...@v fails on its replace directives; a module of our own
  # that requires k8s.io/kubernetes and pins every staging module builds it.
  run "$here/k8s-build/gen-go-mod.sh" "$KUBERNETES_VERSION" "$work"
  log "building kube-apiserver and kubectl $KUBERNETES_VERSION (takes several minutes once)"
  mkdir -p "$dest.tmp"
  # Stamp the version the way the Kubernetes release build does, so /version and kubectl agree.
  local minor="${KUBERNETES_VERSION#v1.}" ldflags="-s -w" pkg
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$work" && run env CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  (cd "$work" && run env CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  link kube-apiserver "$dest/kube-apiserver"; link kubectl "$dest/kubectl"
}

install_etcd() {
  local dest="$cache/etcd-$ETCD_DEBIAN_SUITE"
  if [[ -x "$dest/etcd" ]]; then link etcd "$dest/etcd"; return; fi
  command -v apt-get >/dev/null || die "etcd: apt-get is required to fetch etcd-server from Debian $ETCD_DEBIAN_SUITE"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/lists/partial" "$work/archives/partial"
  # A private sources list: the system's apt configuration is never changed.
  echo "deb http://deb.debian.org/debian $ETCD_DEBIAN_SUITE main" >"$work/sources.list"
  local aptopts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives" -o Debug::NoLocking=1)
  log "fetching etcd-server from Debian $ETCD_DEBIAN_SUITE"
  run apt-get "${aptopts[@]}" -qq update
  (cd "$work" && run apt-get "${aptopts[@]}" -qq download etcd-server)
  local deb; deb="$(ls "$work"/etcd-server_*.deb)"
  run dpkg -x "$deb" "$work/x"
  local ver; ver="$("$work/x/usr/bin/etcd" --version | sed -n 's/^etcd Version: //p')"
  [[ "$ver" == "$ETCD_VERSION_PREFIX"* ]] || die "etcd: Debian $ETCD_DEBIAN_SUITE ships $ver, need $ETCD_VERSION_PREFIX*"
  mkdir -p "$dest.tmp" && cp "$work/x/usr/bin/etcd" "$dest.tmp/etcd"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  link etcd "$dest/etcd"
}

# Chromium is a system package (it needs the system's shared libraries, so it cannot live in the
# cache like the static Go binaries): installed with apt-get when missing, linked as
# .tools/bin/chromium either way.
install_chromium() {
  local exe
  exe="$(command -v chromium || true)"
  if [[ -z "$exe" ]]; then
    command -v apt-get >/dev/null || die "chromium: apt-get is required to install Debian's $CHROMIUM_PACKAGE"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
    log "installing $CHROMIUM_PACKAGE with apt-get (once)"
    # A machine that never ran apt-get update has no package lists yet.
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$CHROMIUM_PACKAGE" >/dev/null; then
      run "${sudo[@]}" apt-get update -qq
      run env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$CHROMIUM_PACKAGE"
    fi
    exe="$(command -v chromium)" || die "chromium: not on PATH after installing $CHROMIUM_PACKAGE"
  fi
  local major
  major="$("$exe" --version | sed -n 's/^Chromium \([0-9]*\)\..*/\1/p')"
  [[ -n "$major" && "$major" -ge "$CHROMIUM_MIN_MAJOR" ]] ||
    die "chromium: $("$exe" --version) is older than $CHROMIUM_MIN_MAJOR (the pinned playwright-core needs it)"
  link chromium "$exe"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(nats-server natscli livekit-server etcd kube helm chromium)
for t in "${want[@]}"; do
  case "$t" in
    nats-server|nats) install_nats_server ;;
    natscli) install_natscli ;;
    livekit-server|livekit) install_livekit_server ;;
    helm) install_helm ;;
    kube|kube-apiserver|kubectl) install_kube ;;
    etcd) install_etcd ;;
    chromium) install_chromium ;;
    *) die "unknown tool '$t' (known: nats-server natscli livekit-server etcd kube helm chromium)" ;;
  esac
done
log "tools ready in $bin"
