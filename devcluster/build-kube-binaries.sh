#!/usr/bin/env bash
# Build the Kubernetes binaries the local cluster runs, once, into a cache
# keyed by version (no registry ships them for this machine and there is no
# Docker):
#   kube-VERSION/       kube-apiserver, kube-controller-manager, kubectl, etcd
#   kube-node-VERSION/  kubelet, kube-proxy, kube-scheduler, pause (the real node)
#   containerd-VERSION/ containerd, containerd-shim-runc-v2, ctr
#   coredns-VERSION/    coredns
#   crictl-VERSION/     crictl
#   helm-VERSION/       helm
# runc and the CNI plugins come from Debian (scripts/install-system-deps.sh).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with a local path. We write a
# wrapper module that requires k8s.io/kubernetes and pins each staging module
# to its published v0.MINOR.PATCH tag instead, then build the cmd packages.
#
# Usage: build-kube-binaries.sh
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# containerd's compatibility matrix pairs Kubernetes 1.36 with containerd 2.2+;
# 2.3 is the LTS line. crictl has no v1.36 tag; v1.37 speaks the same CRI v1.
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.3.7}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
CACHE_ROOT="${SIPFLEET_CACHE:-$HOME/.cache/sipfleet}"
OUT="$CACHE_ROOT/kube-$KUBE_VERSION"
NODE_OUT="$CACHE_ROOT/kube-node-$KUBE_VERSION"
HELM_OUT="$CACHE_ROOT/helm-$HELM_VERSION"
CONTAINERD_OUT="$CACHE_ROOT/containerd-$CONTAINERD_VERSION"
COREDNS_OUT="$CACHE_ROOT/coredns-$COREDNS_VERSION"
CRICTL_OUT="$CACHE_ROOT/crictl-$CRICTL_VERSION"
LOG="$CACHE_ROOT/build-kube-$KUBE_VERSION.log"  # the last build's full output

die() { echo "build-kube-binaries: $*" >&2; exit 1; }
command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (https://go.dev/doc/install) and retry"
mkdir -p "$CACHE_ROOT"

targets=("$OUT" "$HELM_OUT" "$NODE_OUT" "$CONTAINERD_OUT" "$COREDNS_OUT" "$CRICTL_OUT")
all_cached() {
  local t
  for t in "${targets[@]}"; do [[ -f "$t/.complete" ]] || return 1; done
}
if all_cached; then
  echo "kube $KUBE_VERSION and the tools next to it: cached in $CACHE_ROOT"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

# write_wrapper DIR: the wrapper module (go.mod, an etcd main, a pause main)
# in DIR, resolved. Sets $ldflags for the kube commands.
write_wrapper() {
  local work="$1"
  rm -rf "$work" && mkdir -p "$work/etcd" "$work/pause"
  cd "$work"
  echo "[kube] fetching k8s.io/kubernetes@$KUBE_VERSION module graph"
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
  # The pod sandbox's process (what registry.k8s.io/pause does, in Go): hold
  # the pod's namespaces, reap orphans, exit on SIGINT/SIGTERM. Built here so
  # no image is ever pulled.
  cat > pause/main.go <<'GO'
// Command pause holds a pod sandbox's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  cat > tools.go <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  echo "[kube] resolving modules (etcd $etcd_version, staging $staging_version)"
  go mod tidy -e >/dev/null

  local now pkg
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
  done
}

build_kube() {
  local work="$OUT.work"
  write_wrapper "$work"
  mkdir -p "$OUT/bin"
  echo "[kube] compiling kube-apiserver, kube-controller-manager, kubectl, etcd (cold: about 5 min on 2 cores)"
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$OUT/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" ./etcd
  cd / && rm -rf "$work"
  touch "$OUT/.complete"
}

build_kube_node() {
  local work="$NODE_OUT.work"
  write_wrapper "$work"
  mkdir -p "$NODE_OUT/bin"
  echo "[node] compiling kubelet, kube-proxy, kube-scheduler, pause"
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$NODE_OUT/bin/" \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-scheduler
  go build -trimpath -ldflags "-s -w" -o "$NODE_OUT/bin/pause" ./pause
  cd / && rm -rf "$work"
  touch "$NODE_OUT/.complete"
}

build_containerd() {
  echo "[containerd] building containerd $CONTAINERD_VERSION, its runc shim and ctr"
  local mod="github.com/containerd/containerd/v2"
  # No cgo here, so no btrfs/devmapper/zfs snapshotters (overlayfs is the one used).
  GOBIN="$CONTAINERD_OUT/bin" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION" \
    "$mod/cmd/containerd@$CONTAINERD_VERSION" \
    "$mod/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$mod/cmd/ctr@$CONTAINERD_VERSION"
  touch "$CONTAINERD_OUT/.complete"
}

build_coredns() {
  echo "[coredns] building coredns $COREDNS_VERSION"
  GOBIN="$COREDNS_OUT/bin" go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  touch "$COREDNS_OUT/.complete"
}

build_crictl() {
  echo "[crictl] building crictl $CRICTL_VERSION"
  GOBIN="$CRICTL_OUT/bin" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  touch "$CRICTL_OUT/.complete"
}

build_helm() {
  echo "[helm] building helm $HELM_VERSION"
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

want() { [[ " ${targets[*]} " == *" $1 "* && ! -f "$1/.complete" ]]; }

start=$(date +%s)
(
  set -e
  for step in "$OUT:build_kube" "$HELM_OUT:build_helm" "$NODE_OUT:build_kube_node" \
    "$CONTAINERD_OUT:build_containerd" "$COREDNS_OUT:build_coredns" "$CRICTL_OUT:build_crictl"; do
    if want "${step%%:*}"; then
      t0=$(date +%s)
      "${step##*:}"
      echo "[time] ${step##*:}: $(( $(date +%s) - t0 )) s"
    fi
  done
) 2>&1 | tee "$LOG" | grep --line-buffered -E '^\[[a-z]+\]' || true
if ! all_cached; then
  tail -n 30 "$LOG" >&2
  die "build failed; the full log is $LOG"
fi
echo "built in $(( $(date +%s) - start )) s into $CACHE_ROOT"
