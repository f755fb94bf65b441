#!/usr/bin/env bash
# `make demo`: the main job end to end on local services, nothing leaves 127.0.0.1.
#   moto (the ECR API) + an "upstream" registry + an "ECR" registry (htpasswd, holding the
#   user AWS with moto's token as password, so the ECR auth flow is real end to end), with
#   Amazon ECR's data-plane manners in front of it (the tests' ECR personality, docs/registries.md).
# Steps: generate multi-arch images upstream, copy one with a progress bar, tag ECR
# repositories in moto, then list → sync --dry-run → sync → sync again (no-op) → list --check.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/debug/ecr-mirror-sync}
VENV=${VENV:-$ROOT/.venv}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ecr-mirror-sync-demo.XXXXXX")
PIDS=()
cleanup() { touch "$WORK/ecr-manners.json.stop" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$BIN|ecr-mirror-sync|"; "$@"; }

start_registry() { # name port [htpasswd-file]
  local dir=$WORK/$1; mkdir -p "$dir/data"
  { echo "version: 0.1"; echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$2}"
    [ -n "${3:-}" ] && echo "auth: {htpasswd: {realm: demo, path: $3}}"; } > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/access.log" 2> "$dir/error.log" & PIDS+=($!)
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$2/v2/" && return 0; sleep 0.1; done
  echo "registry $1 did not start: $(cat "$dir/error.log")" >&2; exit 1
}

UP=$(free_port); ECR=$(free_port); MOTO=$(free_port)
say "starting moto on :$MOTO, upstream registry on :$UP, ECR registry on :$ECR"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO" > "$WORK/moto.log" 2>&1 & PIDS+=($!)
htpasswd -Bbn AWS 123456789012-auth-token > "$WORK/htpasswd"
start_registry upstream "$UP"
start_registry ecr "$ECR" "$WORK/htpasswd"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$MOTO/moto-api/" && break; sleep 0.1; done

say "giving the ECR registry Amazon ECR's data-plane manners (docs/registries.md)"
echo "  the PATCH of an upload answers 201, a manifest GET has no Docker-Content-Digest, DELETE of an"
echo "  upload session is 405, mounts need BLOB_MOUNTING and a committed manifest, manifests <= 4 MiB"
# The personality runs inside the integration test binary (tests/integration/support/personality.rs).
TESTBIN=$(cargo test --test integration --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])' | tail -1)
[ -x "$TESTBIN" ] || { echo "cannot build the integration test binary (cargo test --test integration --no-run)" >&2; exit 1; }
PERSONALITY_SERVE="ecr http://127.0.0.1:$ECR 0 $WORK/ecr-manners.json" \
  "$TESTBIN" registries::serve_personality_for_benchmarks --ignored --exact --nocapture \
  > "$WORK/ecr-manners.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/ecr-manners.json" ] && break; sleep 0.1; done
[ -s "$WORK/ecr-manners.json" ] || { echo "the ECR personality did not start: $(cat "$WORK/ecr-manners.log")" >&2; exit 1; }
ECR_FRONT=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/ecr-manners.json")
echo "  ECR endpoint: $ECR_FRONT (in front of the registry on :$ECR)"

export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
       AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export ECR_MIRROR_SYNC_REGISTRY_ENDPOINT=$ECR_FRONT ECR_MIRROR_SYNC_DEST_TLS_VERIFY=false \
       ECR_MIRROR_SYNC_SRC_TLS_VERIFY=false
export ECR_MIRROR_SYNC_POLICY=$ROOT/docker/default-policy.json   # the policy the container image ships
ECR_HOST=123456789012.dkr.ecr.us-east-1.amazonaws.com

say "generating upstream images (OCI indexes, linux/amd64 + linux/arm64, no Docker needed)"
for spec in "keda 2.4.0 1" "keda 2.5.0 2" "nginx 1.27 3" "redis 7.2 4"; do
  set -- $spec
  python3 .ci/gen_image.py "$WORK/layout-$1" "$2" --seed "$3" --shared-seed 9 --layer-size 2000000 >/dev/null
  skopeo copy -q --all --insecure-policy --dest-tls-verify=false "oci:$WORK/layout-$1:$2" "docker://127.0.0.1:$UP/upstream/$1:$2"
done

say "a one-off copy (progress bar on a terminal), straight into ECR"
run "$BIN" copy --src "127.0.0.1:$UP/upstream/keda:2.4.0" --dest "$ECR_HOST/adhoc/keda"

say "marking ECR repositories with resource tags (in moto)"
"$VENV/bin/python" - "$UP" <<'PY'
import sys, boto3
up = sys.argv[1]
ecr = boto3.client("ecr")
for name, image, tags, extra in [
    ("mirror/keda", f"127.0.0.1:{up}/upstream/keda", "2.4.0/2.5.0", {}),
    ("mirror/nginx", f"127.0.0.1:{up}/upstream/nginx", "1.27", {"upstream-platforms": "linux/arm64"}),
    ("mirror/redis", f"127.0.0.1:{up}/upstream/redis", "7.2/7.4", {}),   # 7.4 does not exist upstream
    ("mirror/broken", f"127.0.0.1:{up}/upstream/redis", "7.2//x", {}),  # an empty item: an error for this repo only
]:
    t = [{"Key": "upstream-image", "Value": image}, {"Key": "upstream-tags", "Value": tags}]
    t += [{"Key": k, "Value": v} for k, v in extra.items()]
    ecr.create_repository(repositoryName=name, tags=t)
    print(f"  {name}: upstream-image={image} upstream-tags={tags} {extra or ''}")
PY

say "what is marked for mirroring"
run "$BIN" list --render-table || true

say "what a sync would do (both digests, nothing written)"
run "$BIN" sync --dry-run || true

say "sync (exit code 1: mirror/broken and redis:7.4 fail, everything else is mirrored)"
run "$BIN" sync --metrics-file "$WORK/ecr_mirror_sync.prom" && echo "exit 0" || echo "exit $?"

say "the sync's Prometheus metrics (--metrics-file, for node-exporter's textfile collector; docs/metrics.md)"
grep -v '^# HELP' "$WORK/ecr_mirror_sync.prom"

say "sync again: a no-op, one HEAD per tag on each side"
: > "$WORK/ecr/access.log"; : > "$WORK/upstream/access.log"
run "$BIN" sync --report-dir "$WORK/reports" || true
echo "report files: $(cd "$WORK/reports" && ls)"
echo "ECR requests during the no-op:      $(grep -c '"HEAD /v2/mirror' "$WORK/ecr/access.log" || true) HEAD manifest, $(grep -cE '"(GET|PUT|POST|PATCH) /v2/mirror/[^ ]*/manifests' "$WORK/ecr/access.log" || true) other manifest requests"
echo "upstream requests during the no-op: $(grep -c '"HEAD /v2/upstream' "$WORK/upstream/access.log" || true) HEAD manifest, $(grep -cE '"(GET|PUT) /v2/upstream' "$WORK/upstream/access.log" || true) GET/PUT"

say "status per tag, with both digests"
run "$BIN" list --check || true

say "verify: every platform's digest, upstream vs ECR"
run "$BIN" verify --render-table || true

say "digests match upstream (skopeo as an independent reader)"
for ref in keda:2.4.0 keda:2.5.0 redis:7.2; do
  a=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$UP/upstream/$ref" | sha256sum | cut -c1-64)
  b=$(skopeo inspect --raw --tls-verify=false --creds AWS:123456789012-auth-token "docker://127.0.0.1:$ECR/mirror/$ref" | sha256sum | cut -c1-64)
  [ "$a" = "$b" ] && echo "  $ref  sha256:$a  identical" || { echo "  $ref  MISMATCH $a != $b"; exit 1; }
done
say "what the ECR personality answered, by request kind"
python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
for k, n in sorted(s["by_kind"].items()): print(f"  {k:28s} {n}")' "$WORK/ecr-manners.json"
say "done; stopping moto and the registries"
