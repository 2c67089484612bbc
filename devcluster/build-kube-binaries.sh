#!/usr/bin/env bash
# Build the Kubernetes control-plane binaries (kube-apiserver,
# kube-controller-manager, kubectl), etcd and helm from the Go module proxy,
# once, into a cache keyed by version. No registry ships these binaries for
# this machine and there is no Docker, so the local control plane builds them.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with a local path. We write a
# wrapper module that requires k8s.io/kubernetes and pins each staging module
# to its published v0.MINOR.PATCH tag instead, then build the cmd packages.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
CACHE_ROOT="${SIPFLEET_CACHE:-$HOME/.cache/sipfleet}"
OUT="$CACHE_ROOT/kube-$KUBE_VERSION"
HELM_OUT="$CACHE_ROOT/helm-$HELM_VERSION"
LOG="$CACHE_ROOT/build-kube-$KUBE_VERSION.log"

die() { echo "build-kube-binaries: $*" >&2; exit 1; }
command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (https://go.dev/doc/install) and retry"
mkdir -p "$CACHE_ROOT"

if [[ -f "$OUT/.complete" && -f "$HELM_OUT/.complete" ]]; then
  echo "kube $KUBE_VERSION and helm $HELM_VERSION: cached in $CACHE_ROOT"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

build_kube() {
  local work="$OUT.work"
  rm -rf "$work" && mkdir -p "$work/etcd"
  cd "$work"
  echo "[1/4] fetching k8s.io/kubernetes@$KUBE_VERSION module graph"
  go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
  local modfile
  modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.mod"
  local minor patch staging_version
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  patch="$(echo "$KUBE_VERSION" | cut -d. -f3)"
  staging_version="v0.$minor.$patch"
  local etcd_version
  etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$modfile")"
  [[ -n "$etcd_version" ]] || die "cannot find the etcd version in $modfile"

  {
    echo "module sipfleet.local/kubebuild"
    echo
    awk '$1=="go"{print; exit}' "$modfile"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $KUBE_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo
    echo "replace ("
    awk '$2=="v0.0.0" && $1 ~ /^k8s.io\// {print $1}' "$modfile" | sort -u | while read -r m; do
      echo "	$m => $m $staging_version"
    done
    echo ")"
  } > go.mod
  # etcd's own main package is a one-liner around etcdmain; the wrapper has it.
  cat > etcd/main.go <<'GO'
// Command etcd runs the etcd server that the pinned Kubernetes was tested with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat > tools.go <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  echo "[2/4] resolving modules (etcd $etcd_version, staging $staging_version)"
  go mod tidy -e >/dev/null

  local now ldflags pkg
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
  done
  mkdir -p "$OUT/bin"
  echo "[3/4] compiling kube-apiserver, kube-controller-manager, kubectl, etcd (cold: about 5 min on 2 cores)"
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$OUT/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" ./etcd
  cd / && rm -rf "$work"
  touch "$OUT/.complete"
}

build_helm() {
  echo "[4/4] building helm $HELM_VERSION"
  mkdir -p "$HELM_OUT/bin"
  # Helm's own Makefile stamps the Kubernetes version its client libraries
  # speak; without it `helm template` assumes v1.20 and fails kubeVersion checks.
  go mod download -json "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
  local client_go k8s_minor ldflags pkg
  client_go="$(awk '$1=="k8s.io/client-go"{print $2; exit}' \
    "$(go env GOMODCACHE)/cache/download/helm.sh/helm/v3/@v/$HELM_VERSION.mod")"
  k8s_minor="$(echo "$client_go" | cut -d. -f2)"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  GOBIN="$HELM_OUT/bin" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$HELM_OUT/.complete"
}

start=$(date +%s)
(
  [[ -f "$OUT/.complete" ]] || build_kube
  [[ -f "$HELM_OUT/.complete" ]] || build_helm
) 2>&1 | tee "$LOG" | grep --line-buffered -E '^\[[0-9]/4\]' || true
if [[ ! -f "$OUT/.complete" || ! -f "$HELM_OUT/.complete" ]]; then
  tail -n 30 "$LOG" >&2
  die "build failed; the full log is $LOG"
fi
echo "built in $(( $(date +%s) - start )) s into $CACHE_ROOT"
