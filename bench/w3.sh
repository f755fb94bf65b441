#!/usr/bin/env bash
# W3 — big image: `ecr-mirror-sync copy` against `skopeo copy --all`, 2 × 512 MiB random layers.
#
# Starts two fresh docker-registry instances on free 127.0.0.1 ports (upstream + destination),
# generates and pushes the image upstream, then runs each tool RUNS times (default 5),
# alternating the order every round. Before every single run the destination registry is
# restarted on an empty storage dir, and every run writes into a fresh repository name, so
# every run really streams 1 GiB. After every run the destination digest is checked against
# the source. Wall time and peak RSS come from `/usr/bin/time -v`.
#
# Prints a markdown table and writes bench/out/w3.json.
#
# Env: BIN (our binary; default /work/scratch/release-target/release/ecr-mirror-sync, else
#      target/release/ecr-mirror-sync), RUNS (default 5), LAYER_SIZE (bytes, default 536870912),
#      LAYERS (default 2), KEEP=1 keeps the temp dir, W3_TMP (parent of the temp dir).
# Needs: docker-registry, skopeo, /usr/bin/time, python3, curl (`make deps` installs them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
if [[ -z "${BIN:-}" ]]; then
  BIN=/work/scratch/release-target/release/ecr-mirror-sync
  [[ -x "$BIN" ]] || BIN="$ROOT/target/release/ecr-mirror-sync"
fi
RUNS="${RUNS:-5}"
LAYER_SIZE="${LAYER_SIZE:-536870912}"
LAYERS="${LAYERS:-2}"
TAG=v1
OUT_DIR="$HERE/out"

for c in docker-registry skopeo python3 curl; do
  command -v "$c" >/dev/null || { echo "w3: '$c' not found (run 'make deps')" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "w3: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }
[[ -x "$BIN" ]] || { echo "w3: $BIN is not executable (cargo build --release, or set BIN)" >&2; exit 2; }

WORK="$(mktemp -d "${W3_TMP:-${TMPDIR:-/tmp}}/w3.XXXXXX")"
UP_PID="" DST_PID=""

stop() { # stop one registry by PID and wait for it
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$DST_PID"; stop "$UP_PID"
  if [[ "${KEEP:-0}" == 1 ]]; then echo "w3: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry NAME -> sets REG_PID and REG_PORT; storage in $WORK/NAME (fresh)
start_registry() {
  local name="$1" dir="$WORK/$1"
  rm -rf "$dir"; mkdir -p "$dir/storage"
  REG_PORT="$(free_port)"
  cat > "$dir/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$REG_PORT}
EOF
  docker-registry serve "$dir/config.yml" > "$dir/access.log" 2> "$dir/error.log" &
  REG_PID=$!
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" 2>/dev/null; then return 0; fi
    kill -0 "$REG_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "w3: registry $name did not start:" >&2; cat "$dir/error.log" >&2; exit 1
}

digest_of() { # digest_of REF -> sha256 of the raw top-level manifest
  skopeo inspect --raw --tls-verify=false "docker://$1" | sha256sum | cut -d' ' -f1
}

# /usr/bin/time -v output -> "wall_s rss_kib cpu_s" (elapsed is "h:mm:ss" or "m:ss.ss")
parse_time() { # parse_time FILE
  python3 - "$1" <<'PY'
import sys
wall = rss = None
cpu = 0.0
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("Elapsed (wall clock) time"):
        v = line.rsplit(" ", 1)[1]
        s = 0.0
        for part in v.split(":"):
            s = s * 60 + float(part)
        wall = s
    elif line.startswith("Maximum resident set size"):
        rss = int(line.rsplit(" ", 1)[1])
    elif line.startswith(("User time (seconds)", "System time (seconds)")):
        cpu += float(line.rsplit(" ", 1)[1])
print(f"{wall} {rss} {cpu:.2f}")
PY
}

# ---------------------------------------------------------------- upstream image
echo "w3: workdir $WORK" >&2
# Other work on the machine skews wall times; record how busy it was around the runs.
busy() { printf 'loadavg %s; cpu pressure %s' "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$(head -1 /proc/pressure/cpu 2>/dev/null | cut -d' ' -f2-4 || echo n/a)"; }
BUSY_START="$(busy)"
start_registry up; UP_PID=$REG_PID; UP=$REG_PORT
echo "w3: generating $LAYERS x $LAYER_SIZE B random layers" >&2
t0=$(date +%s.%N)
python3 "$HERE/gen_big_image.py" "$WORK/img" "$TAG" --platforms linux/amd64 \
  --layers "$LAYERS" --layer-size "$LAYER_SIZE" > "$WORK/gen.digest"
t1=$(date +%s.%N)
echo "w3: generated in $(python3 -c "print(round($t1-$t0,1))") s; pushing upstream" >&2
SRC="127.0.0.1:$UP/big/app:$TAG"
skopeo copy --all --preserve-digests --insecure-policy --dest-tls-verify=false -q \
  "oci:$WORK/img:$TAG" "docker://$SRC" >&2
rm -rf "$WORK/img"   # the layout is no longer needed; save the disk
SRC_DIGEST="$(digest_of "$SRC")"
[[ "sha256:$SRC_DIGEST" == "$(cat "$WORK/gen.digest")" ]] || {
  echo "w3: upstream digest sha256:$SRC_DIGEST != generated $(cat "$WORK/gen.digest")" >&2; exit 1; }
echo "w3: upstream $SRC sha256:$SRC_DIGEST" >&2

# ---------------------------------------------------------------- runs
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

run_one() { # run_one TOOL ROUND
  local tool="$1" n="$2" dst_ref tf="$WORK/time.$1.$2" log="$WORK/out.$1.$2"
  # A fresh, empty destination registry for every run; flush the previous run's writes first
  # so its writeback does not land on this run.
  stop "$DST_PID"; DST_PID=""
  rm -rf "$WORK/dst"; sync
  start_registry dst; DST_PID=$REG_PID; local DST=$REG_PORT
  case "$tool" in
    ems)
      dst_ref="127.0.0.1:$DST/ems-$n/app:$TAG"
      /usr/bin/time -v -o "$tf" "$BIN" copy --src "$SRC" --dest "127.0.0.1:$DST/ems-$n/app" \
        --src-tls-verify=false --dest-tls-verify=false > "$log" 2>&1 \
        || { echo "w3: ems run $n failed:" >&2; cat "$log" "$tf" >&2; exit 1; } ;;
    skopeo)
      dst_ref="127.0.0.1:$DST/sko-$n/app:$TAG"
      /usr/bin/time -v -o "$tf" skopeo copy --all --insecure-policy --src-tls-verify=false \
        --dest-tls-verify=false "docker://$SRC" "docker://$dst_ref" > "$log" 2>&1 \
        || { echo "w3: skopeo run $n failed:" >&2; cat "$log" "$tf" >&2; exit 1; } ;;
  esac
  local got; got="$(digest_of "$dst_ref")"
  [[ "$got" == "$SRC_DIGEST" ]] || { echo "w3: $tool run $n: digest $got != $SRC_DIGEST" >&2; exit 1; }
  local wall rss cpu
  read -r wall rss cpu < <(parse_time "$tf")
  printf '%s\t%s\t%s\t%s\t%s\tsha256:%s\n' "$tool" "$n" "$wall" "$rss" "$cpu" "$got" >> "$RESULTS"
  printf 'w3: %-6s run %d: %6.2f s  %7.1f MiB  cpu %5.2f s  digest ok\n' "$tool" "$n" "$wall" \
    "$(python3 -c "print($rss/1024)")" "$cpu" >&2
}

for n in $(seq 1 "$RUNS"); do
  if (( n % 2 )); then run_one ems "$n"; run_one skopeo "$n"
  else run_one skopeo "$n"; run_one ems "$n"; fi
done

# ---------------------------------------------------------------- report
mkdir -p "$OUT_DIR"
BUSY_END="$(busy)"
echo "w3: machine before: $BUSY_START; after: $BUSY_END" >&2
python3 - "$RESULTS" "$OUT_DIR/w3.json" "$BIN" "$SRC_DIGEST" "$LAYERS" "$LAYER_SIZE" \
  "$BUSY_START" "$BUSY_END" <<'PY'
import json, os, platform, statistics, subprocess, sys, datetime
res, out, binpath, digest, layers, layer_size, busy_start, busy_end = sys.argv[1:9]
runs = []
for line in open(res):
    tool, n, wall, rss, cpu, d = line.rstrip("\n").split("\t")
    runs.append({"tool": tool, "run": int(n), "wall_s": float(wall), "max_rss_kib": int(rss),
                 "cpu_s": float(cpu), "dest_digest": d})

def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception as e:  # noqa
        return f"unknown ({e})"

summary = {}
for tool in ("ems", "skopeo"):
    w = [r["wall_s"] for r in runs if r["tool"] == tool]
    m = [r["max_rss_kib"] / 1024 for r in runs if r["tool"] == tool]
    c = [r["cpu_s"] for r in runs if r["tool"] == tool]
    summary[tool] = {"runs": len(w), "wall_median_s": statistics.median(w), "wall_min_s": min(w),
                     "wall_max_s": max(w), "rss_median_mib": statistics.median(m),
                     "rss_max_mib": max(m), "cpu_median_s": statistics.median(c),
                     "throughput_median_mib_s": int(layers) * int(layer_size) / 2**20
                                                / statistics.median(w)}
ratio = summary["ems"]["wall_median_s"] / summary["skopeo"]["wall_median_s"]
doc = {
    "workload": "W3 big image",
    "image": {"layers": int(layers), "layer_size": int(layer_size), "platforms": ["linux/amd64"],
              "digest": "sha256:" + digest},
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                "busy_before_runs": busy_start, "busy_after_runs": busy_end,
                "mem_total_kib": int(open("/proc/meminfo").readline().split()[1])},
    "versions": {"ecr-mirror-sync": ver([binpath, "--version"]),
                 "skopeo": ver(["skopeo", "--version"]),
                 "docker-registry": ver(["docker-registry", "--version"])},
    "runs": runs,
    "summary": summary,
    "ratio_wall_median_ems_over_skopeo": ratio,
    "targets": {"wall_ratio_max": 1.0, "rss_max_mib": 64,
                "wall_met": ratio <= 1.0, "rss_met": summary["ems"]["rss_max_mib"] <= 64},
}
json.dump(doc, open(out, "w"), indent=2)

print("| tool | runs | median wall | min | max | peak RSS (max of runs) | median RSS | median CPU (user+sys) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for tool, name in (("ems", "ecr-mirror-sync copy"), ("skopeo", "skopeo copy --all")):
    s = summary[tool]
    print(f"| {name} | {s['runs']} | {s['wall_median_s']:.2f} s | {s['wall_min_s']:.2f} s | "
          f"{s['wall_max_s']:.2f} s | {s['rss_max_mib']:.1f} MiB | {s['rss_median_mib']:.1f} MiB | "
          f"{s['cpu_median_s']:.2f} s |")
print()
t = doc["targets"]
print(f"Ratio of median wall times (ours / skopeo): **{ratio:.2f}×** "
      f"(target ≤ 1.0×: {'met' if t['wall_met'] else 'MISSED'})")
print(f"Our peak RSS: **{summary['ems']['rss_max_mib']:.1f} MiB** "
      f"(target ≤ 64 MiB: {'met' if t['rss_met'] else 'MISSED'})")
print(f"\nwritten: {out}", file=sys.stderr)
PY
