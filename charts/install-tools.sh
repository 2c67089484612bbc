#!/usr/bin/env bash
# Installs the chart's test tools once, cached by version under
# ~/.cache/sipfleet (or $SIPFLEET_CACHE): kubeconform and actionlint built with
# `go install`, the Prometheus Operator CRDs (ServiceMonitor, PodMonitor,
# PrometheusRule) taken from the prometheus-operator Go module, and mermaid
# (with jsdom) from npm to parse the docs' diagrams.
# Prints nothing on a warm cache; safe to run any number of times.
set -euo pipefail

CACHE="${SIPFLEET_CACHE:-$HOME/.cache/sipfleet}"
KUBECONFORM_VERSION=v0.7.0
ACTIONLINT_VERSION=v1.7.7
PROMETHEUS_OPERATOR_VERSION=v0.85.0
MERMAID_VERSION=11.17.2
JSDOM_VERSION=25.0.1

# go_tool NAME MODULE VERSION: go install MODULE@VERSION into a versioned dir.
go_tool() {
    local name=$1 module=$2 version=$3
    local dir="$CACHE/tools-$name-$version"
    [[ -x "$dir/bin/$name" ]] && return 0
    command -v go >/dev/null || { echo "install-tools: 'go' is needed to build $name" >&2; exit 1; }
    echo "install-tools: building $name $version into $dir" >&2
    mkdir -p "$dir"
    GOBIN="$dir/bin" GOFLAGS=-mod=mod go install "$module@$version"
}

# prometheus_crds: the Prometheus Operator CRDs the chart can create objects of.
prometheus_crds() {
    local dir="$CACHE/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
    [[ -f "$dir/.complete" ]] && return 0
    echo "install-tools: fetching prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs into $dir" >&2
    local module_dir
    module_dir=$(cd /tmp && go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$dir"
    for kind in servicemonitors podmonitors prometheusrules; do
        cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$dir/"
    done
    touch "$dir/.complete"
}

# mermaid_tools: node_modules with mermaid and jsdom for docs/check_mermaid.mjs.
mermaid_tools() {
    local dir="$CACHE/tools-mermaid-$MERMAID_VERSION"
    [[ -f "$dir/.complete" ]] && return 0
    command -v npm >/dev/null || { echo "install-tools: 'npm' is needed for mermaid" >&2; exit 1; }
    echo "install-tools: installing mermaid $MERMAID_VERSION into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent \
        "mermaid@$MERMAID_VERSION" "jsdom@$JSDOM_VERSION"
    touch "$dir/.complete"
}

go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
prometheus_crds
mermaid_tools
