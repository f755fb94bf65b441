#!/usr/bin/env bash
# W3 floor: what the two local registries alone can do with the W3 image, without any copy
# tool, to see how much of W3's wall time is the tool and how much is the registries + disk.
#
# Same setup as bench/w3.sh (two fresh docker-registry instances, 2 × 512 MiB random gzip
# layers). Then, ROUNDS times (default 3), each into a fresh destination registry:
#   get   — curl GETs both layers in parallel from upstream into /dev/null (read side only);
#   pipe  — curl GET | curl PATCH (chunked) + PUT ?digest=, both layers in parallel: a
#           streaming copy with no client-side hashing, the least any GET→PATCH copier can do;
#   ems   — ecr-mirror-sync copy of the same image, for reference, plus the CPU seconds the
#           destination registry burnt during it (from /proc/PID/stat).
# pipe and ems alternate their order every round. Prints one line per measurement and a
# median per kind.
#
# Env: BIN, ROUNDS, LAYER_SIZE, KEEP=1, W3_TMP — as in w3.sh.
#      PERF=1 runs the ems copies under `perf record -g` (bench/out/w3-ems.perf.data) and
#      prints the top symbols (self time) at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
if [[ -z "${BIN:-}" ]]; then
  BIN=/work/scratch/release-target/release/ecr-mirror-sync
  [[ -x "$BIN" ]] || BIN="$ROOT/target/release/ecr-mirror-sync"
fi
ROUNDS="${ROUNDS:-3}"
LAYER_SIZE="${LAYER_SIZE:-536870912}"
TAG=v1
for c in docker-registry skopeo python3 curl; do
  command -v "$c" >/dev/null || { echo "w3_floor: '$c' not found (run 'make deps')" >&2; exit 2; }
done
[[ -x "$BIN" ]] || { echo "w3_floor: $BIN is not executable" >&2; exit 2; }

WORK="$(mktemp -d "${W3_TMP:-${TMPDIR:-/tmp}}/w3floor.XXXXXX")"
UP_PID="" DST_PID=""
stop() { local pid="$1"; [[ -n "$pid" ]] || return 0; kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
cleanup() { stop "$DST_PID"; stop "$UP_PID"; [[ "${KEEP:-0}" == 1 ]] || rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() {
  local name="$1" dir="$WORK/$1"
  rm -rf "$dir"; mkdir -p "$dir/storage"
  REG_PORT="$(free_port)"
  printf 'version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp: {addr: 127.0.0.1:%s}\n' \
    "$dir/storage" "$REG_PORT" > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/access.log" 2> "$dir/error.log" &
  REG_PID=$!
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "w3_floor: registry $name did not start" >&2; exit 1
}
fresh_dst() { stop "$DST_PID"; DST_PID=""; rm -rf "$WORK/dst"; sync; start_registry dst; DST_PID=$REG_PID; DST=$REG_PORT; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

start_registry up; UP_PID=$REG_PID; UP=$REG_PORT
python3 "$HERE/gen_big_image.py" "$WORK/img" "$TAG" --layer-size "$LAYER_SIZE" >/dev/null
skopeo copy --all --preserve-digests --insecure-policy --dest-tls-verify=false -q \
  "oci:$WORK/img:$TAG" "docker://127.0.0.1:$UP/big/app:$TAG" >&2
mapfile -t LAYERS < <(find "$WORK/img/blobs/sha256" -size +1M -type f -printf '%f\n')
rm -rf "$WORK/img"
UPURL="http://127.0.0.1:$UP/v2/big/app/blobs"

pipe_one() { # pipe_one DIGEST REPO
  local loc
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://127.0.0.1:$DST/v2/$2/blobs/uploads/" \
        | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [[ "$loc" == http* ]] || loc="http://127.0.0.1:$DST$loc"
  loc=$(curl -fsS "$UPURL/sha256:$1" \
        | curl -fsS -X PATCH -T - -H 'Content-Type: application/octet-stream' -D - -o /dev/null "$loc" \
        | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [[ "$loc" == http* ]] || loc="http://127.0.0.1:$DST$loc"
  local sep='?'; [[ "$loc" == *\?* ]] && sep='&'
  curl -fsS -X PUT -o /dev/null "$loc${sep}digest=sha256:$1"
}

RES="$WORK/res"; : > "$RES"
WRAP=""
if [[ "${PERF:-0}" == 1 ]]; then
  mkdir -p "$HERE/out"; PERF_DATA="$HERE/out/w3-ems.perf.data"
  WRAP="perf record -q -F 999 -g -o $PERF_DATA --"
fi
run_get() {
  local t0; t0=$(now); pids=()
  for d in "${LAYERS[@]}"; do curl -fsS -o /dev/null "$UPURL/sha256:$d" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "get $(secs "$t0" "$(now)")" | tee -a "$RES"
}
run_pipe() { # run_pipe ROUND
  fresh_dst; local c0 u0 t0 c1 u1 t1
  c0=$(cpu_ticks "$DST_PID"); u0=$(cpu_ticks "$UP_PID"); t0=$(now); pids=()
  for d in "${LAYERS[@]}"; do pipe_one "$d" "pipe-$1/app" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now); c1=$(cpu_ticks "$DST_PID"); u1=$(cpu_ticks "$UP_PID")
  for d in "${LAYERS[@]}"; do   # the blobs really landed
    curl -fsS -I -o /dev/null "http://127.0.0.1:$DST/v2/pipe-$1/app/blobs/sha256:$d"
  done
  echo "pipe $(secs "$t0" "$t1") dst_registry_cpu=$((c1-c0))ticks up_registry_cpu=$((u1-u0))ticks" | tee -a "$RES"
}
run_ems() { # run_ems ROUND
  fresh_dst; local c0 u0 t0 c1 u1 t1
  c0=$(cpu_ticks "$DST_PID"); u0=$(cpu_ticks "$UP_PID"); t0=$(now)
  $WRAP "$BIN" copy --src "127.0.0.1:$UP/big/app:$TAG" --dest "127.0.0.1:$DST/ems-$1/app" \
    --src-tls-verify=false --dest-tls-verify=false > "$WORK/ems.log" 2>&1 \
    || { cat "$WORK/ems.log" >&2; exit 1; }
  t1=$(now); c1=$(cpu_ticks "$DST_PID"); u1=$(cpu_ticks "$UP_PID")
  echo "ems $(secs "$t0" "$t1") dst_registry_cpu=$((c1-c0))ticks up_registry_cpu=$((u1-u0))ticks" | tee -a "$RES"
}
for r in $(seq 1 "$ROUNDS"); do
  run_get
  # alternate the order every round, so neither side always runs second
  if (( r % 2 )); then run_pipe "$r"; run_ems "$r"; else run_ems "$r"; run_pipe "$r"; fi
done
echo "(ticks are 1/$(getconf CLK_TCK) s)"
python3 - "$RES" <<'PY'
import statistics, sys, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, t = line.split()[:2]
    v[k].append(float(t))
for k, ts in v.items():
    print(f"median {k}: {statistics.median(ts):.2f} s (min {min(ts):.2f}, max {max(ts):.2f}, n={len(ts)})")
PY
if [[ -n "$WRAP" ]]; then
  echo "--- perf: ecr-mirror-sync self time by symbol (last round) ---"
  perf report -i "$PERF_DATA" --no-children --sort comm,dso,sym --percent-limit 1.5 --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -30
  echo "--- perf: by shared object ---"
  perf report -i "$PERF_DATA" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -8
fi
