#!/usr/bin/env bash
# Install the PrometheusRule schema validator into $REPO/.tools/crd-validator: npm
# @kubernetes-models/prometheus-operator, whose models validate against the JSON schemas generated from the
# Prometheus Operator's CRDs (kubernetes-validate knows only the core kinds). tests/validators.rs uses it.
# Idempotent: does nothing when that version is already there.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$REPO/.tools/crd-validator"
PKG="@kubernetes-models/prometheus-operator"
VERSION="6.0.0"
MARK="$DIR/node_modules/$PKG/package.json"

if [ -f "$MARK" ] && grep -q "\"version\": \"$VERSION\"" "$MARK"; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run make apt-deps" >&2; exit 1; }
mkdir -p "$DIR"
npm install --silent --no-audit --no-fund --prefix "$DIR" "$PKG@$VERSION" >/dev/null
echo "installed $PKG@$VERSION into $DIR"
