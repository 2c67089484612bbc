#!/usr/bin/env bash
# Copies the generated CRDs (top-level crds/, one source: the operator's
# models via `python -m sipfleet.operator.crdgen`) into the chart's crds/.
# Run it after regenerating the CRDs; tests/unit/test_chart_sync.py fails
# while the two folders differ. `--check` only reports a difference.
set -euo pipefail
cd "$(dirname "$0")/.."
src=crds dst=charts/sipfleet/crds

if [[ "${1:-}" == "--check" ]]; then
    diff -r "$src" "$dst" >/dev/null || {
        echo "charts/sipfleet/crds differs from crds/: run charts/sync-crds.sh" >&2
        exit 1
    }
    exit 0
fi

files=("$src"/*.yaml)
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "${files[@]}" "$dst"/
echo "synced ${#files[@]} CRD file(s) into $dst"
