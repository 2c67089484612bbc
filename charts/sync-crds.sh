#!/usr/bin/env bash
# Copies the chart's two inputs from their single sources:
#   crds/*.yaml                 -> charts/sipfleet/crds/   (generated from the
#                                  operator's models by `python -m sipfleet.operator.crdgen`)
#   operator/deploy/rbac.yaml   -> charts/sipfleet/files/operator-rbac.yaml
#                                  (the chart's ClusterRole renders its rules)
# Run it after either source changes; tests/unit/test_chart_sync.py fails while
# they differ. `--check` only reports a difference (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/sipfleet

if [[ "${1:-}" == "--check" ]]; then
    if diff -r crds "$chart/crds" >/dev/null &&
        cmp -s operator/deploy/rbac.yaml "$chart/files/operator-rbac.yaml"; then
        exit 0
    fi
    echo "the chart is out of sync with crds/ or operator/deploy/rbac.yaml: run charts/sync-crds.sh" >&2
    exit 1
fi

crds=(crds/*.yaml)
mkdir -p "$chart/crds" "$chart/files"
rm -f "$chart"/crds/*.yaml
cp "${crds[@]}" "$chart/crds/"
cp operator/deploy/rbac.yaml "$chart/files/operator-rbac.yaml"
echo "synced ${#crds[@]} CRD file(s) and the operator RBAC into $chart"
