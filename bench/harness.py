#!/usr/bin/env python3
"""W1, W2, W4, W5 of issue 7: ecr-mirror-sync against skopeo on loopback services.

Called by bench/run (which builds the binary and installs matplotlib). Python stdlib only, plus
the repo venv's boto3 (moto[server] brings it) for creating tagged repositories in moto.

Services (all on 127.0.0.1, started here, stopped on exit, whatever happens):
  - moto (the ECR API), a second moto for W4 (exactly 1,000 repositories),
  - an "upstream" docker-registry (no auth),
  - an "ECR" docker-registry (htpasswd user AWS / password 123456789012-auth-token, which is what
    moto's GetAuthorizationToken hands out, so the ECR auth flow is real end to end).

Every timed run goes through /usr/bin/time -v (peak RSS) and a wall clock taken here. Request counts
come from the registries' access logs (one Apache combined line per request on stdout), sliced by
byte offset around each run.

W6/W7 (issue 13 section 4) put a registry personality (bench/latency_proxy.md) in front of each
registry: Docker Hub's manners with LAT_UP_MS (100) per request in front of the upstream, ECR's with
LAT_ECR_MS (5) in front of the "ECR" registry; PERSONALITY_BIN is the integration test binary.

Writes bench/out/w1.json, w2.json, w4.json, w5.json, w1rule.json, w6.json, w7.json, env.json.
Env: BIN, RUNS (default 5), REPOS (50), W4_REPOS (1000),
     WORKLOADS (default "w2 w1 w5 w4 w1rule w6 w7"; RUNS_W6_COLD, W7_LEVELS "4 20" tags per repo,
     LAT_ALT_MAX_REQUESTS "32 64" (also time ours and the floor at these --max-requests; "" = none);
     also "w1profile", and "hold": set up the W1 estate and wait, for profiling by hand;
     HOLD_TAGS tags per repository, default 4, 20 for the 1,000-tag estate),
     BENCH_TMP (parent dir of the work dir), KEEP=1 keeps the work dir.
"""
import atexit, concurrent.futures as cf, datetime, gzip, hashlib, http.client, json, os, platform
import random, re, shutil, signal, socket, statistics, struct, subprocess, sys, tempfile, time, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
BIN = os.environ["BIN"]
RUNS = int(os.environ.get("RUNS", "5"))
REPOS = int(os.environ.get("REPOS", "50"))
W4_REPOS = int(os.environ.get("W4_REPOS", "1000"))
WORKLOADS = os.environ.get("WORKLOADS", "w2 w1 w5 w4 w1rule w6 w7").split()
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
MOTO = os.path.join(ROOT, ".venv", "bin", "moto_server")
ECR_USER, ECR_PASS = "AWS", "123456789012-auth-token"
LAYER = 65536
RUNS_W2 = int(os.environ.get("RUNS_W2", str(RUNS)))
W5_LEVELS = [int(x) for x in os.environ.get("W5_LEVELS", "1 4 16").split()]  # tags per repo
# W6/W7 (issue 13 section 4): the registries behind the personalities of the integration tests
# (bench/latency_proxy.md), Docker Hub's 100 ms away, ECR's 5 ms away.
PERSONALITY_BIN = os.environ.get("PERSONALITY_BIN", "")
LAT_UP_MS = int(os.environ.get("LAT_UP_MS", "100"))
LAT_ECR_MS = int(os.environ.get("LAT_ECR_MS", "5"))
# our `--max-requests` default (src/app/cli.rs): the floors send at the same concurrency
EMS_MAX_REQUESTS = 32
RUNS_W6_COLD = int(os.environ.get("RUNS_W6_COLD", str(RUNS)))
W7_LEVELS = [int(x) for x in os.environ.get("W7_LEVELS", "4 20").split()]  # tags per repo: 200, 1,000
# extra rounds of ours (and of the floor) with more requests in flight per registry (--max-requests)
LAT_ALT_MAX_REQUESTS = [int(x) for x in os.environ.get("LAT_ALT_MAX_REQUESTS", "32 64").split()]
HOLD_TAGS = int(os.environ.get("HOLD_TAGS", "4"))  # tags per repo for "hold" (20: 1,000 tags)
MAX_TAGS = max([4] + (W5_LEVELS if "w5" in WORKLOADS else [])
               + ([HOLD_TAGS] if "hold" in WORKLOADS else [])
               + (W7_LEVELS if "w7" in WORKLOADS else []))  # generated upstream per repo; W1/W2 use 4

WORK = tempfile.mkdtemp(prefix="bench.", dir=os.environ.get("BENCH_TMP") or None)
PROCS = []


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def cleanup():
    for p in reversed(PROCS):
        if p.poll() is None:
            p.terminate()
    for p in reversed(PROCS):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    if os.environ.get("KEEP") == "1":
        log("kept", WORK)
    else:
        shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(port, path, proc, what):
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise SystemExit(f"bench: {what} did not start")


def loadavg():
    la = open("/proc/loadavg").read().split()[:3]
    try:
        psi = open("/proc/pressure/cpu").readline().split()[1:4]
    except OSError:
        psi = []
    return {"loadavg": " ".join(la), "cpu_pressure": " ".join(psi)}


# ------------------------------------------------------------------ services
class Registry:
    def __init__(self, name, auth=False, port=None):
        self.name, self.auth, self.port = name, auth, port or free_port()
        self.gen = 0
        self.proc = None

    def start(self, fresh=True):
        """(Re)start; fresh=True wipes the storage. Each start gets its own access log."""
        self.stop()
        self.gen += 1
        d = os.path.join(WORK, self.name)
        os.makedirs(d, exist_ok=True)
        store = os.path.join(d, "storage")
        if fresh:
            shutil.rmtree(store, ignore_errors=True)
            subprocess.run(["sync"])
        os.makedirs(store, exist_ok=True)
        cfg = os.path.join(d, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog: {level: error}\n")
            f.write(f"storage: {{filesystem: {{rootdirectory: {store}}}, delete: {{enabled: true}}}}\n")
            f.write(f"http: {{addr: 127.0.0.1:{self.port}}}\n")
            if self.auth:
                f.write(f"auth: {{htpasswd: {{realm: bench, path: {WORK}/htpasswd}}}}\n")
        self.log = os.path.join(d, f"access.{self.gen}.log")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=open(self.log, "wb"),
                                     stderr=open(os.path.join(d, "error.log"), "ab"))
        PROCS.append(self.proc)
        wait_http(self.port, "/v2/", self.proc, f"registry {self.name}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def mark(self):
        time.sleep(0.05)
        return (self.log, os.path.getsize(self.log))

    def requests_since(self, mark):
        time.sleep(0.3)  # let the registry flush the last access lines
        path, off = mark
        with open(path, "rb") as f:
            f.seek(off)
            return count_requests(f.read().decode("utf-8", "replace"))


LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


def kind_of(method, path):
    p = path.split("?", 1)[0]
    if p.rstrip("/") == "/v2":
        return "ping"
    if "/manifests/" in p:
        return "manifest"
    if "/blobs/uploads/" in p or p.endswith("/blobs/uploads"):
        if method == "POST" and "mount=" in path:
            return "mount"
        return "upload"
    if "/blobs/" in p:
        return "blob"
    return "other"


def count_requests(text):
    """{"total", "by_kind": {kind: {METHOD: n}}, "status": {code: n}, "by_status_kind": {...}}"""
    by_kind, status, ok_by_kind = {}, {}, {}
    total = 0
    for m in LINE.finditer(text):
        method, path, code = m.group(1), m.group(2), m.group(3)
        k = kind_of(method, path)
        total += 1
        by_kind.setdefault(k, {}).setdefault(method, 0)
        by_kind[k][method] += 1
        status[code] = status.get(code, 0) + 1
        if code != "401":
            ok_by_kind.setdefault(k, {}).setdefault(method, 0)
            ok_by_kind[k][method] += 1
    return {"total": total, "by_kind": by_kind, "status": status,
            "by_kind_excluding_401": ok_by_kind}


def proc_cpu(proc):
    """user+system CPU seconds of a running process (from /proc/PID/stat)."""
    f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


MOTO_PROCS = {}


def start_moto(name):
    port = free_port()
    p = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)],
                         stdout=open(os.path.join(WORK, f"{name}.log"), "wb"), stderr=subprocess.STDOUT)
    PROCS.append(p)
    MOTO_PROCS[name] = p
    wait_http(port, "/moto-api/", p, name)
    return port


# ------------------------------------------------------------------ upstream generation
GZ_HEAD = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])


def gz_layer(seed, size=LAYER):
    """A valid gzip stream of exactly `size` bytes: one stored deflate block of random bytes.
    gzip media type, so skopeo copies it as is (it gzips plain tar layers on the way)."""
    n = size - 10 - 5 - 8
    data = random.Random(seed).randbytes(n)
    body = GZ_HEAD + struct.pack("<BHH", 1, n, 0xFFFF ^ n) + data + struct.pack(
        "<II", zlib.crc32(data), n)
    return body, "sha256:" + hashlib.sha256(data).hexdigest()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Pusher:
    """Minimal registry client over one keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, body=None, headers=None):
        for attempt in range(3):
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                r.read()
                return r
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        raise RuntimeError(f"{method} {path} failed")

    def blob(self, repo, data):
        d = sha(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202, (r.status, repo)
        loc = r.getheader("Location")
        loc = re.sub(r"^https?://[^/]+", "", loc)
        sep = "&" if "?" in loc else "?"
        r = self.req("PUT", f"{loc}{sep}digest={d}", body=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, (r.status, repo, d)
        return d

    def manifest(self, repo, ref, data, mt):
        r = self.req("PUT", f"/v2/{repo}/manifests/{ref}", body=data, headers={"Content-Type": mt})
        assert r.status == 201, (r.status, repo, ref)
        return sha(data)


OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
OCI_C = "application/vnd.oci.image.config.v1+json"
OCI_L = "application/vnd.oci.image.layer.v1.tar+gzip"
PLATFORMS = [("linux", "amd64"), ("linux", "arm64")]
SHARED, SHARED_DIFF = gz_layer("shared-base-layer")


def push_repo(port, repo, ntags):
    """ntags tags t0..t{n-1}; each an OCI index of 2 platforms, 2 × 64 KiB layers (the first one
    shared by the whole estate). Returns the set of blob digests."""
    p = Pusher(port)
    blobs = set()
    p.blob(repo, SHARED)
    blobs.add(sha(SHARED))
    for t in range(ntags):
        tag = f"t{t}"
        entries = []
        for os_, arch in PLATFORMS:
            layer, diff = gz_layer(f"{repo}:{tag}:{arch}")
            ld = p.blob(repo, layer)
            cfg = json.dumps({"architecture": arch, "os": os_,
                              "rootfs": {"type": "layers", "diff_ids": [SHARED_DIFF, diff]},
                              "config": {"Labels": {"bench": f"{repo}:{tag}"}}},
                             sort_keys=True).encode()
            cd = p.blob(repo, cfg)
            blobs.update([ld, cd])
            man = json.dumps({"schemaVersion": 2, "mediaType": OCI_M,
                              "config": {"mediaType": OCI_C, "digest": cd, "size": len(cfg)},
                              "layers": [{"mediaType": OCI_L, "digest": sha(SHARED), "size": len(SHARED)},
                                         {"mediaType": OCI_L, "digest": ld, "size": len(layer)}]},
                             sort_keys=True).encode()
            md = p.manifest(repo, sha(man), man, OCI_M)
            entries.append({"mediaType": OCI_M, "digest": md, "size": len(man),
                            "platform": {"os": os_, "architecture": arch}})
        idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": entries},
                         sort_keys=True).encode()
        p.manifest(repo, tag, idx, OCI_I)
    return blobs


def repo_name(i):
    return f"up/app-{i:03d}"


# ------------------------------------------------------------------ timing
def parse_time_v(path):
    rss = cpu = 0
    for line in open(path):
        line = line.strip()
        if line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(" ", 1)[1])
        elif line.startswith(("User time (seconds)", "System time (seconds)")):
            cpu += float(line.rsplit(" ", 1)[1])
    return rss, cpu


def timed(name, argv, env, regs=(), check=None):
    """Run argv under /usr/bin/time -v; returns a run record with wall, RSS, CPU, request counts."""
    tf = os.path.join(WORK, "time.out")
    marks = [(r, r.mark()) for r in regs]
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", "-o", tf] + argv, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        log(f"{name} failed (exit {p.returncode}):\n" + p.stderr.decode()[-4000:] +
            p.stdout.decode()[-2000:])
        raise SystemExit(1)
    rss, cpu = parse_time_v(tf)
    rec = {"wall_s": wall, "max_rss_kib": rss, "cpu_s": round(cpu, 3), "exit": p.returncode}
    if regs:
        rec["requests"] = {r.name: r.requests_since(m) for r, m in marks}
    if check:
        rec.update(check(p.stdout.decode(), p.stderr.decode()) or {})
    return rec


def summarize(runs):
    w = [r["wall_s"] for r in runs]
    m = [r["max_rss_kib"] / 1024 for r in runs]
    c = [r["cpu_s"] for r in runs]
    return {"runs": len(w), "wall_median_s": statistics.median(w), "wall_min_s": min(w),
            "wall_max_s": max(w), "rss_max_mib": max(m), "rss_median_mib": statistics.median(m),
            "cpu_median_s": statistics.median(c)}


def ems_summary(stdout, _stderr):
    s = None
    for line in stdout.splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("type") == "summary":
            s = o["data"]
    if s is None:
        raise SystemExit("bench: no summary line from ecr-mirror-sync sync --output json")
    if s.get("failed") or s.get("blocked"):
        raise SystemExit(f"bench: sync reported failures: {s}")
    return {"ems_summary": s}


# ------------------------------------------------------------------ main
def main():
    os.makedirs(OUT, exist_ok=True)
    t_start = time.time()
    with open(os.path.join(WORK, "htpasswd"), "w") as f:
        f.write(subprocess.run(["htpasswd", "-Bbn", ECR_USER, ECR_PASS], capture_output=True,
                               text=True, check=True).stdout)
    up = Registry("upstream")
    ecr = Registry("ecr", auth=True)
    up.start()
    ecr.start()
    moto_port = start_moto("moto")
    log(f"upstream :{up.port}, ECR :{ecr.port}, moto :{moto_port}, work {WORK}")

    base_env = dict(os.environ)
    for k in list(base_env):
        if k.startswith(("ECR_MIRROR_SYNC_", "AWS_")):
            del base_env[k]
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    env = dict(base_env, **aws, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}",
               ECR_MIRROR_SYNC_REGISTRY_ENDPOINT=f"http://127.0.0.1:{ecr.port}",
               ECR_MIRROR_SYNC_DEST_TLS_VERIFY="false", ECR_MIRROR_SYNC_SRC_TLS_VERIFY="false",
               ECR_MIRROR_SYNC_POLICY=os.path.join(ROOT, "docker", "default-policy.json"))

    need_estate = any(w in WORKLOADS for w in ("w1", "w2", "w5", "w1profile", "hold", "w1rule", "w6", "w7"))
    gen = {}
    if need_estate:
        # ---- upstream estate: REPOS repos × MAX_TAGS tags (W1/W2 use t0..t3)
        t0 = time.perf_counter()
        all_blobs = set()
        with cf.ThreadPoolExecutor(8) as ex:
            for b in ex.map(lambda i: push_repo(up.port, repo_name(i), MAX_TAGS), range(REPOS)):
                all_blobs |= b
        gen = {"repos": REPOS, "tags_per_repo": MAX_TAGS, "seconds": time.perf_counter() - t0,
               "unique_blobs": len(all_blobs)}
        log(f"generated {REPOS}×{MAX_TAGS} tags upstream ({len(all_blobs)} blobs) in "
            f"{gen['seconds']:.1f} s")

    def set_moto_tags(ntags):
        tags = "/".join(f"t{t}" for t in range(ntags))
        script = r'''
import sys, json, boto3, concurrent.futures as cf
up, n, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ecr = boto3.client("ecr")
have = {r["repositoryName"]: r["repositoryArn"] for p in ecr.get_paginator("describe_repositories").paginate() for r in p["repositories"]}
def one(i):
    name = f"mirror/app-{i:03d}"
    t = [{"Key": "upstream-image", "Value": f"127.0.0.1:{up}/up/app-{i:03d}"},
         {"Key": "upstream-tags", "Value": tags}]
    if name in have:
        ecr.tag_resource(resourceArn=have[name], tags=t)
    else:
        ecr.create_repository(repositoryName=name, tags=t)
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(one, range(n)))
'''
        subprocess.run([VENV_PY, "-c", script, str(up.port), str(REPOS), tags],
                       env=dict(base_env, **aws, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}"),
                       check=True)

    def skopeo_yaml(ntags):
        path = os.path.join(WORK, f"skopeo-{ntags}.yaml")
        with open(path, "w") as f:
            f.write(f"127.0.0.1:{up.port}:\n  tls-verify: false\n  images:\n")
            for i in range(REPOS):
                f.write(f"    {repo_name(i)}: [{', '.join(f't{t}' for t in range(ntags))}]\n")
        return path

    def ems_cmd():
        return [BIN, "sync", "--output", "json"]

    def sko_cmd(ntags):
        return ["skopeo", "sync", "--all", "--insecure-policy", "--src", "yaml", "--dest", "docker",
                "--dest-creds", f"{ECR_USER}:{ECR_PASS}", "--dest-tls-verify=false",
                skopeo_yaml(ntags), f"127.0.0.1:{ecr.port}/skopeo-mirror"]

    def both(label, ntags, before_round=None, n=RUNS, start=1):
        runs = []
        for i in range(start, start + n):
            order = ["ems", "skopeo"] if i % 2 else ["skopeo", "ems"]
            if before_round:
                before_round()
            for tool in order:
                if tool == "ems":
                    r = timed(f"{label} ems", ems_cmd(), env, (up, ecr), ems_summary)
                else:
                    r = timed(f"{label} skopeo", sko_cmd(ntags), base_env, (up, ecr))
                r.update(tool=tool, run=i)
                runs.append(r)
                log(f"{label} {tool:6s} run {i}: {r['wall_s']*1000:8.0f} ms  "
                    f"{r['max_rss_kib']/1024:6.1f} MiB  up {r['requests']['upstream']['total']} req, "
                    f"ecr {r['requests']['ecr']['total']} req")
        return runs

    def doc_for(name, runs, extra):
        summ = {t: summarize([r for r in runs if r["tool"] == t]) for t in ("ems", "skopeo")}
        return dict({"workload": name, "runs": runs, "summary": summ,
                     "ratio_skopeo_over_ems": summ["skopeo"]["wall_median_s"] / summ["ems"]["wall_median_s"]},
                    **extra)

    def write(name, doc):
        doc.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote bench/out/{name}.json")

    def prime(ntags):
        """Bring both tools' destinations to the already-mirrored state for ntags tags."""
        r1 = timed("prime ems", ems_cmd(), env, (), ems_summary)
        r2 = timed("prime skopeo", sko_cmd(ntags), base_env)
        log(f"primed {ntags} tags/repo: ems {r1['wall_s']:.1f} s ({r1['ems_summary']}), "
            f"skopeo {r2['wall_s']:.1f} s")

    if need_estate:
        set_moto_tags(4)

    # ---- W2: cold sync. Before every round the destination registry restarts on empty storage;
    # the two tools write disjoint repositories (mirror/* and skopeo-mirror/*), order alternating.
    # Its first round also leaves both destinations fully mirrored: the start state of W1 and W5.
    # Order: W2 round 1, W1, W5 (levels already mirrored), W2 rounds 2.., W5 (bigger levels), so
    # that the most important numbers exist first.
    n_tags = REPOS * 4
    w2_extra = {"estate": {"repos": REPOS, "tags": n_tags, "platforms": 2, "layers_per_platform": 2,
                           "layer_bytes": LAYER, "unique_blobs": 1 + n_tags * 2 * 2,
                           "manifests": n_tags * 3, "runs_planned": RUNS_W2}}
    w2_runs = []
    # W2_START=N (N > 1) appends rounds N.. to an existing bench/out/w2.json (resume a cut-short run)
    w2_start = int(os.environ.get("W2_START", "1"))
    if w2_start > 1:
        w2_runs = [r for r in json.load(open(os.path.join(OUT, "w2.json")))["runs"] if r["run"] < w2_start]
    primed = 0

    def w2_rounds(first, n):
        busy0 = loadavg()
        for i in range(first, first + n):
            rs = both("W2", 4, before_round=lambda: ecr.start(fresh=True), n=1, start=i)
            w2_runs.extend(rs)
            write("w2", doc_for("W2 cold sync", w2_runs, dict(w2_extra, busy_before=busy0,
                                                              busy_after=loadavg())))

    if "w2" in WORKLOADS:
        w2_rounds(w2_start, 1)
        primed = 4
    if ("w1" in WORKLOADS or ("w5" in WORKLOADS and min(W5_LEVELS) <= 4)) and not primed:
        ecr.start(fresh=True)
        prime(4)
        primed = 4
    if "w1profile" in WORKLOADS and not primed:   # ours only: the profile needs no skopeo state
        ecr.start(fresh=True)
        timed("prime ems", ems_cmd(), env, (), ems_summary)
        primed = 4

    # ---- hold: a workbench for profiling by hand. Primes the estate (ours only), writes
    # WORK/lab.env (the environment our binary needs, plus the service ports) and waits for
    # Ctrl-C. `set -a; . /tmp/bench.*/lab.env; $BIN sync` is then a W1 no-op.
    if "hold" in WORKLOADS:
        ecr.start(fresh=True)
        if HOLD_TAGS != 4:
            set_moto_tags(HOLD_TAGS)
        timed("prime ems", ems_cmd(), env, (), ems_summary)
        with open(os.path.join(WORK, "lab.env"), "w") as f:
            for k in sorted(set(env) - set(base_env)) + ["BIN"]:
                f.write(f"{k}='{env.get(k, BIN)}'\n")
            f.write(f"UPSTREAM_PORT={up.port}\nECR_PORT={ecr.port}\nMOTO_PORT={moto_port}\n")
            f.write(f"SKOPEO_YAML='{skopeo_yaml(4)}'\nWORK='{WORK}'\n")
            f.write(f"ECR_PID={ecr.proc.pid}\nUPSTREAM_PID={up.proc.pid}\nMOTO_PID={MOTO_PROCS['moto'].pid}\n")
        log(f"holding; environment in {WORK}/lab.env; Ctrl-C or SIGTERM to stop")
        while True:
            time.sleep(3600)

    # ---- W1: no-op on the already-mirrored estate
    if "w1" in WORKLOADS:
        busy0 = loadavg()
        runs = both("W1", 4)
        write("w1", doc_for("W1 no-op sync", runs, {
            "estate": {"repos": REPOS, "tags": REPOS * 4, "platforms": 2, "layers_per_platform": 2,
                       "layer_bytes": LAYER},
            "busy_before": busy0, "busy_after": loadavg()}))

    # ---- W5: no-op at REPOS × W5_LEVELS tags (50 × 1/4/16 = 50, 200, 800)
    levels = {}
    if os.environ.get("W5_APPEND") == "1":  # add levels to an existing bench/out/w5.json
        levels = json.load(open(os.path.join(OUT, "w5.json")))["levels"]
    sko_max = int(os.environ.get("W5_SKOPEO_MAX_TAGS", "1000000"))  # per repo; 0 = never

    def w5_level(ntags):
        set_moto_tags(ntags)
        busy0 = loadavg()
        if ntags <= sko_max:
            runs = both(f"W5@{REPOS * ntags}", ntags)
            d = doc_for(f"W5 no-op at {REPOS * ntags} tags", runs, {})
        else:
            runs = []
            for i in range(1, RUNS + 1):
                r = timed("W5 ems", ems_cmd(), env, (up, ecr), ems_summary)
                r.update(tool="ems", run=i)
                runs.append(r)
                log(f"W5@{REPOS * ntags} ems run {i}: {r['wall_s']*1000:8.0f} ms")
            d = {"workload": f"W5 no-op at {REPOS * ntags} tags", "runs": runs,
                 "summary": {"ems": summarize(runs)}, "skopeo_skipped": True}
        d.update(busy_before=busy0, busy_after=loadavg())
        levels[str(REPOS * ntags)] = d
        write_w5()
        set_moto_tags(4)

    def write_w5():
        fits = {}
        xs = sorted(int(k) for k in levels)
        for tool in ("ems", "skopeo"):
            pts = [(x, levels[str(x)]["summary"][tool]["wall_median_s"] * 1000) for x in xs
                   if tool in levels[str(x)]["summary"]]
            if len(pts) < 2:
                continue
            mx = statistics.mean(x for x, _ in pts)
            my = statistics.mean(y for _, y in pts)
            slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
            icpt = my - slope * mx
            ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in pts)
            ss_tot = sum((y - my) ** 2 for _, y in pts) or 1
            fits[tool] = {"ms_per_tag": slope, "constant_ms": icpt, "r2": 1 - ss_res / ss_tot,
                          "points": len(pts)}
        planned = sorted(set([REPOS * t for t in W5_LEVELS] + [int(k) for k in levels]))
        write("w5", {"workload": "W5 scaling (no-op)", "repos": REPOS, "levels": levels,
                     "fit": fits, "levels_planned": planned})

    if "w5" in WORKLOADS:
        for ntags in sorted(t for t in W5_LEVELS if t <= primed):
            w5_level(ntags)
    if "w2" in WORKLOADS and RUNS_W2 > 1:
        w2_rounds(w2_start + 1, RUNS_W2 - 1)
    if "w5" in WORKLOADS:
        for ntags in sorted(t for t in W5_LEVELS if t > primed):
            set_moto_tags(ntags)
            r1 = timed("prime ems", ems_cmd(), env, (), ems_summary)
            log(f"primed ems at {ntags} tags/repo in {r1['wall_s']:.1f} s")
            if ntags <= sko_max:
                r2 = timed("prime skopeo", sko_cmd(ntags), base_env)
                log(f"primed skopeo at {ntags} tags/repo in {r2['wall_s']:.1f} s")
            w5_level(ntags)
    # ---- W1 profile: where does our no-op spend its time? (ours only; not part of `make bench`'s
    # default workloads: WORKLOADS=w1profile)
    if "w1profile" in WORKLOADS:
        set_moto_tags(4)
        prof = {"tags": REPOS * 4}
        # (a) the whole no-op, and discovery alone, and an empty process, RUNS times each
        for label, argv in (("sync", ems_cmd()), ("list", [BIN, "list", "--output", "json"]),
                            ("version", [BIN, "--version"])):
            rs = [timed(f"profile {label}", argv, env) for _ in range(RUNS)]
            prof[label] = summarize([dict(r, tool="ems") for r in rs])
            log(f"profile {label}: median {prof[label]['wall_median_s']*1000:.0f} ms")
        # (b) the HEAD floor: the same 400 manifest HEADs with a bare keep-alive client, at our default
        # requests in flight
        import base64, threading
        auth = "Basic " + base64.b64encode(f"{ECR_USER}:{ECR_PASS}".encode()).decode()
        accept = ", ".join([OCI_I, OCI_M, "application/vnd.docker.distribution.manifest.list.v2+json",
                            "application/vnd.docker.distribution.manifest.v2+json"])
        local = threading.local()

        def head(args):
            reg, path, hdrs = args
            cs = getattr(local, "c", None) or {}
            local.c = cs
            if reg.port not in cs:
                cs[reg.port] = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=30)
            c = cs[reg.port]
            c.request("HEAD", path, headers=hdrs)
            r = c.getresponse(); r.read()
            assert r.status == 200, (r.status, path)
        jobs = []
        for i in range(REPOS):
            for t in range(4):
                jobs.append((up, f"/v2/{repo_name(i)}/manifests/t{t}", {"Accept": accept}))
                jobs.append((ecr, f"/v2/mirror/app-{i:03d}/manifests/t{t}", {"Accept": accept,
                                                                              "Authorization": auth}))
        floors = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(EMS_MAX_REQUESTS) as ex:
                list(ex.map(head, jobs))
            floors.append(time.perf_counter() - t0)
        prof["head_floor_s"] = {"median": statistics.median(floors), "min": min(floors),
                                "max": max(floors), "requests": len(jobs), "in_flight": EMS_MAX_REQUESTS}
        log(f"profile HEAD floor: median {statistics.median(floors)*1000:.0f} ms for {len(jobs)} HEADs")
        # (b2) server-side CPU during our no-op and during a cold sync: who is busy?
        def with_server_cpu(label, argv):
            servers = {"upstream registry": up.proc, "ECR registry": ecr.proc, "moto": MOTO_PROCS["moto"]}
            c0 = {k: proc_cpu(p) for k, p in servers.items()}
            r = timed(label, argv, env, (up, ecr), ems_summary)
            r["server_cpu_s"] = {k: round(proc_cpu(p) - c0[k], 3) for k, p in servers.items()}
            log(f"profile {label}: {r['wall_s']*1000:.0f} ms, ours CPU {r['cpu_s']} s, servers {r['server_cpu_s']}")
            return r
        prof["noop_server_cpu"] = [with_server_cpu("no-op", ems_cmd()) for _ in range(3)]
        # (c) one --debug run with JSON logs (timestamps), kept for reading
        p = subprocess.run(ems_cmd() + ["--debug", "--log-format", "json"], env=env, capture_output=True,
                           text=True)
        open(os.path.join(OUT, "w1_debug.log"), "w").write(p.stderr)
        # (d) perf, when available
        if shutil.which("perf"):
            pd = os.path.join(OUT, "w1-ems.perf.data")
            subprocess.run(["perf", "record", "-q", "-g", "-o", pd, "--"] + ems_cmd(), env=env,
                           capture_output=True)
            rep_ = subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children",
                                   "--percent-limit", "1.5", "--sort", "dso,sym", "-g", "none"],
                                  capture_output=True, text=True).stdout
            open(os.path.join(OUT, "w1_perf.txt"), "w").write(rep_)
        write("w1_profile", prof)
        # (e) a cold sync with server CPU and a --debug log
        ecr.start(fresh=True)
        prof["cold_server_cpu"] = with_server_cpu("cold", ems_cmd())
        ecr.start(fresh=True)
        p = subprocess.run(ems_cmd() + ["--debug", "--log-format", "json"], env=env, capture_output=True,
                           text=True)
        open(os.path.join(OUT, "w2_debug.log"), "w").write(p.stderr)
        write("w1_profile", prof)

    # ---- W4: discovery of 1,000 tagged repositories (own moto, exactly W4_REPOS repositories)
    if "w4" in WORKLOADS:
        m4 = start_moto("moto-w4")
        t0 = time.perf_counter()
        script = r'''
import sys, boto3, concurrent.futures as cf
n, up = int(sys.argv[1]), sys.argv[2]
ecr = boto3.client("ecr")
def one(i):
    ecr.create_repository(repositoryName=f"disc/app-{i:04d}", tags=[
        {"Key": "upstream-image", "Value": f"127.0.0.1:{up}/up/app-{i % 50:03d}"},
        {"Key": "upstream-tags", "Value": "t0/t1/t2/t3"}])
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(one, range(n)))
'''
        subprocess.run([VENV_PY, "-c", script, str(W4_REPOS), str(up.port)], check=True,
                       env=dict(base_env, **aws, AWS_ENDPOINT_URL=f"http://127.0.0.1:{m4}"))
        created = time.perf_counter() - t0
        log(f"W4: created {W4_REPOS} tagged repositories in moto in {created:.1f} s")
        env4 = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{m4}")
        mlog = os.path.join(WORK, "moto-w4.log")

        def check_list(stdout, _):
            n = 0
            for l in stdout.splitlines():
                try:
                    o = json.loads(l)
                except ValueError:
                    continue
                if o.get("type") == "repository":
                    if o["data"].get("error"):
                        raise SystemExit(f"bench: list error: {o}")
                    n += 1
            if n != W4_REPOS:
                raise SystemExit(f"bench: list printed {n} repositories, expected {W4_REPOS}")
            return {"repositories_listed": n}

        busy0 = loadavg()
        runs = []
        for i in range(1, RUNS + 1):
            off = os.path.getsize(mlog)
            r = timed("W4 list", [BIN, "list", "--output", "json"], env4, (), check_list)
            time.sleep(0.2)
            with open(mlog, "rb") as f:
                f.seek(off)
                txt = f.read().decode("utf-8", "replace")
            r["moto_requests"] = len(re.findall(r'"POST / HTTP', txt))
            r.update(tool="ems", run=i)
            runs.append(r)
            log(f"W4 list run {i}: {r['wall_s']*1000:.0f} ms {r['max_rss_kib']/1024:.1f} MiB, "
                f"{r['moto_requests']} ECR API calls")
        write("w4", {"workload": "W4 discovery", "repositories": W4_REPOS, "runs": runs,
                     "summary": {"ems": summarize(runs)}, "create_seconds": created,
                     "busy_before": busy0, "busy_after": loadavg()})

    # ---- W1 with a tag rule on every repository: what a rule adds to a no-op (ours only; skopeo's
    # images-by-semver is another model). Upstream, every repository gets 1.0.0-1.0.3 as aliases of
    # t0-t3 (so t4.. stay, as tags that are not versions). Two estates side by side in moto, the
    # same 50 × 4 images: mirror/app-NNN with upstream-tags t0/t1/t2/t3 (W1 itself) and
    # rule/app-NNN with only upstream-tag-rule "semver=1.x newest=4", timed with --prefix mirror
    # and --prefix rule in alternating order. The difference is the rule's cost: one tag list per
    # upstream repository (one page here), read while discovery goes on.
    if "w1rule" in WORKLOADS:
        rule = "semver=1.x newest=4"
        def alias(i):
            c = Pusher(up.port)
            g = http.client.HTTPConnection("127.0.0.1", up.port, timeout=60)
            repo = repo_name(i)
            for t in range(4):
                g.request("GET", f"/v2/{repo}/manifests/t{t}", headers={"Accept": OCI_I})
                r = g.getresponse()
                body = r.read()
                assert r.status == 200, (r.status, repo)
                c.manifest(repo, f"1.0.{t}", body, OCI_I)
            g.close()
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(alias, range(REPOS)))
        set_moto_tags(4)
        script = r'''
import sys, boto3, concurrent.futures as cf
up, n, rule = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ecr = boto3.client("ecr")
def one(i):
    ecr.create_repository(repositoryName=f"rule/app-{i:03d}", tags=[
        {"Key": "upstream-image", "Value": f"127.0.0.1:{up}/up/app-{i:03d}"},
        {"Key": "upstream-tag-rule", "Value": rule}])
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(one, range(n)))
'''
        moto_env = dict(base_env, **aws, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}")
        subprocess.run([VENV_PY, "-c", script, str(up.port), str(REPOS), rule], env=moto_env,
                       check=True)
        explicit_cmd = [BIN, "sync", "--output", "json", "--prefix", "mirror"]
        rule_cmd = [BIN, "sync", "--output", "json", "--prefix", "rule"]
        for label, cmd in (("explicit", explicit_cmd), ("rule", rule_cmd)):
            r = timed(f"prime {label}", cmd, env, (), ems_summary)
            log(f"primed W1 {label} in {r['wall_s']:.1f} s ({r['ems_summary']})")
        busy0 = loadavg()
        runs = []
        for i in range(1, RUNS + 1):
            order = [("explicit", explicit_cmd), ("rule", rule_cmd)]
            if i % 2 == 0:
                order.reverse()
            for label, cmd in order:
                r = timed(f"W1rule {label}", cmd, env, (up, ecr), ems_summary)
                s_ = r.get("ems_summary") or {}
                if s_.get("skipped") != REPOS * 4 or s_.get("copied"):
                    log(f"W1rule {label}: not a no-op of {REPOS * 4} tags: {s_}")
                    raise SystemExit(1)
                r.update(tool=label, run=i)
                runs.append(r)
                log(f"W1rule {label:8s} run {i}: {r['wall_s']*1000:8.0f} ms  "
                    f"up {r['requests']['upstream']['total']} req, ecr {r['requests']['ecr']['total']} req")
        summ = {t: summarize([r for r in runs if r["tool"] == t]) for t in ("explicit", "rule")}
        write("w1rule", {"workload": "W1 no-op with a tag rule on every repository", "runs": runs,
                         "summary": summ, "rule": rule,
                         "added_ms": (summ["rule"]["wall_median_s"] - summ["explicit"]["wall_median_s"]) * 1000,
                         "estate": {"repos": REPOS, "tags": REPOS * 4},
                         "busy_before": busy0, "busy_after": loadavg()})
        script = r'''
import sys, boto3
ecr = boto3.client("ecr")
for i in range(int(sys.argv[1])):
    ecr.delete_repository(repositoryName=f"rule/app-{i:03d}", force=True)
'''
        subprocess.run([VENV_PY, "-c", script, str(REPOS)], env=moto_env, check=True)

    if "w6" in WORKLOADS or "w7" in WORKLOADS:
        latency_workloads(up, ecr, env, base_env, aws, moto_port, write)

    # ---- environment
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"unknown ({e})"
    mem = int(open("/proc/meminfo").readline().split()[1])
    envdoc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "started": datetime.datetime.fromtimestamp(t_start, datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"nproc": os.cpu_count(), "mem_total_kib": mem, "kernel": platform.release(),
                          "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                       if l.startswith("model name")), "?"),
                          "load_at_end": loadavg()},
              "versions": {"ecr-mirror-sync": ver([BIN, "--version"]),
                           "skopeo": ver(["skopeo", "--version"]),
                           "docker-registry": ver(["docker-registry", "--version"]),
                           "moto": ver([VENV_PY, "-c", "import moto; print(moto.__version__)"]),
                           "python": platform.python_version()},
              "binary": BIN, "runs": RUNS, "generation": gen, "workloads": WORKLOADS}
    if WORKLOADS == ["w1profile"]:
        return
    if os.path.exists(os.path.join(OUT, "env.json")) and set(WORKLOADS) != {"w1", "w2", "w4", "w5", "w1rule", "w6", "w7"}:
        old = json.load(open(os.path.join(OUT, "env.json")))
        old.update({k: v for k, v in envdoc.items() if k != "workloads"})
        old["workloads"] = sorted(set(old.get("workloads", [])) | set(WORKLOADS))
        envdoc = old
    with open(os.path.join(OUT, "env.json"), "w") as f:
        json.dump(envdoc, f, indent=2)


# ------------------------------------------------------------------ W6 / W7: at real latency
class Personality:
    """One registry personality of the integration tests as a server (bench/latency_proxy.md):
    KIND's manners and DELAY_MS per request in front of a running registry."""

    def __init__(self, name, kind, backend, delay_ms):
        self.name, self.kind, self.backend, self.delay_ms = name, kind, backend, delay_ms
        self.proc = None
        self.gen = 0

    def start(self):
        self.stop()
        self.gen += 1
        self.state = os.path.join(WORK, f"{self.name}.{self.gen}.state.json")
        spec = f"{self.kind} http://127.0.0.1:{self.backend.port} {self.delay_ms} {self.state}"
        self.proc = subprocess.Popen(
            [PERSONALITY_BIN, "registries::serve_personality_for_benchmarks", "--ignored", "--exact",
             "--nocapture", "--test-threads", "1"],
            env=dict(os.environ, PERSONALITY_SERVE=spec),
            stdout=open(os.path.join(WORK, f"{self.name}.out"), "ab"), stderr=subprocess.STDOUT)
        PROCS.append(self.proc)
        for _ in range(600):
            if os.path.exists(self.state):
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: personality {self.name} exited ({self.proc.returncode}); "
                                 f"see {WORK}/{self.name}.out")
            time.sleep(0.05)
        else:
            raise SystemExit(f"bench: personality {self.name} did not start")
        st = self.read()
        self.url = st["url"]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        log(f"personality {self.name} ({self.kind}, {self.delay_ms} ms) at {self.url} "
            f"in front of :{self.backend.port}")

    def read(self):
        for _ in range(50):
            try:
                return json.load(open(self.state))
            except (OSError, ValueError):
                time.sleep(0.02)
        raise SystemExit(f"bench: cannot read {self.state}")

    def snap(self):
        time.sleep(0.45)  # the state file is rewritten every 200 ms
        return self.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            open(self.state + ".stop", "w").close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=10)


def personality_delta(a, b):
    """What a personality handled between two state snapshots: requests, own CPU, by kind."""
    req = b["requests"] - a["requests"]
    cpu = b["cpu_ns"] - a["cpu_ns"]
    kinds = {k: v - a["by_kind"].get(k, 0) for k, v in b["by_kind"].items() if v - a["by_kind"].get(k, 0)}
    d = {"requests": req, "cpu_ns": cpu, "cpu_us_per_request": round(cpu / req / 1000, 1) if req else None,
         "by_kind": kinds}
    for k in ("pulls_spent", "rate_limited", "redirects"):
        if k in b:
            d[k] = b[k] - a.get(k, 0)
    return d


def latency_workloads(up, ecr, env, base_env, aws, moto_port, write):
    """W6 (W1 and W2 at real latency, ours against skopeo) and W7 (the no-op at 200 and 1,000 tags
    against a bare client's floor). Estate: moto repositories lat/app-NNN whose upstream-image is
    the Hub personality; ours writes lat/*, skopeo skopeo-lat/*, both through the ECR personality."""
    if not PERSONALITY_BIN or not os.access(PERSONALITY_BIN, os.X_OK):
        raise SystemExit("bench: W6/W7 need PERSONALITY_BIN (the integration test binary, "
                         "bench/latency_proxy.md)")
    hub = Personality("hub", "hub", up, LAT_UP_MS)
    ecrp = Personality("ecrp", "ecr", ecr, LAT_ECR_MS)
    hub.start()
    ecrp.start()
    pers = (hub, ecrp)
    moto_env = dict(base_env, **aws, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}")

    def set_lat_tags(host, ntags):
        script = r'''
import sys, boto3, concurrent.futures as cf
host, n, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ecr = boto3.client("ecr")
have = {r["repositoryName"]: r["repositoryArn"] for p in ecr.get_paginator("describe_repositories").paginate() for r in p["repositories"]}
def one(i):
    name = f"lat/app-{i:03d}"
    t = [{"Key": "upstream-image", "Value": f"{host}/up/app-{i:03d}"}, {"Key": "upstream-tags", "Value": tags}]
    if name in have:
        ecr.tag_resource(resourceArn=have[name], tags=t)
    else:
        ecr.create_repository(repositoryName=name, tags=t)
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(one, range(n)))
'''
        subprocess.run([VENV_PY, "-c", script, host, str(REPOS), "/".join(f"t{t}" for t in range(ntags))],
                       env=moto_env, check=True)

    hub_host = f"127.0.0.1:{hub.port}"
    # skopeo reads the upstream through bench/hub_shim.py (it refuses the personality's token
    # answer, whose issued_at is an HTTP date, and would send Authorization to the "CDN")
    shim_port = free_port()
    shim = subprocess.Popen([sys.executable, os.path.join(HERE, "hub_shim.py"), str(shim_port), str(hub.port)],
                            stderr=open(os.path.join(WORK, "hub_shim.err"), "ab"))
    PROCS.append(shim)
    wait_http(shim_port, "/v2/", shim, "hub shim")
    def lenv(**extra):  # the ECR personality gets a new port when it restarts (cold rounds)
        return dict(env, ECR_MIRROR_SYNC_REGISTRY_ENDPOINT=f"http://127.0.0.1:{ecrp.port}", **extra)
    ems_cmd = [BIN, "sync", "--output", "json", "--prefix", "lat"]

    def sko_cmd(ntags):
        path = os.path.join(WORK, f"skopeo-lat-{ntags}.yaml")
        with open(path, "w") as f:
            f.write(f"127.0.0.1:{shim_port}:\n  tls-verify: false\n  images:\n")
            for i in range(REPOS):
                f.write(f"    {repo_name(i)}: [{', '.join(f't{t}' for t in range(ntags))}]\n")
        return ["skopeo", "sync", "--all", "--insecure-policy", "--src", "yaml", "--dest", "docker",
                "--dest-creds", f"{ECR_USER}:{ECR_PASS}", "--dest-tls-verify=false", path,
                f"127.0.0.1:{ecrp.port}/skopeo-lat"]

    def run(label, tool, argv, e, check=None, noop_tags=None):
        s0 = {p.name: p.snap() for p in pers}
        c0 = proc_cpu(shim)
        r = timed(label, argv, e, (up, ecr), check)
        s1 = {p.name: p.snap() for p in pers}
        if tool == "skopeo":
            r["shim_cpu_s"] = round(proc_cpu(shim) - c0, 3)
        r["personality"] = {p.name: personality_delta(s0[p.name], s1[p.name]) for p in pers}
        r["tool"] = tool
        if noop_tags is not None:
            s_ = r.get("ems_summary") or {}
            if s_.get("skipped") != noop_tags or s_.get("copied"):
                raise SystemExit(f"bench: {label}: not a no-op of {noop_tags} tags: {s_}")
        ph, pe = r["personality"]["hub"], r["personality"]["ecrp"]
        log(f"{label:24s} {r['wall_s']*1000:9.0f} ms  hub {ph['requests']} req "
            f"({ph['cpu_us_per_request']} µs CPU/req), ecr {pe['requests']} req "
            f"({pe['cpu_us_per_request']} µs CPU/req)")
        return r

    def summ(runs, tools):
        return {t: summarize([x for x in runs if x["tool"] == t]) for t in tools
                if any(x["tool"] == t for x in runs)}

    def proxy_cpu(runs):
        out = {}
        for name in ("hub", "ecrp"):
            req = sum(x["personality"][name]["requests"] for x in runs)
            cpu = sum(x["personality"][name]["cpu_ns"] for x in runs)
            out[name] = {"requests": req, "cpu_ms": round(cpu / 1e6, 1),
                         "cpu_us_per_request": round(cpu / req / 1000, 1) if req else None}
        return out

    alt = [(f"ems_mr{n}", n) for n in LAT_ALT_MAX_REQUESTS if n != 16]
    lat = {"upstream_ms": LAT_UP_MS, "ecr_ms": LAT_ECR_MS, "upstream_kind": "hub", "ecr_kind": "ecr",
           "personality_bin": PERSONALITY_BIN}
    n_tags = REPOS * 4
    estate = {"repos": REPOS, "tags": n_tags, "platforms": 2, "layers_per_platform": 2,
              "layer_bytes": LAYER, "unique_blobs": 1 + n_tags * 4, "manifests": n_tags * 3}

    # ---- W6 cold: the ECR registry (and its personality) restart on empty storage before a round
    w6 = {"workload": "W6: W1 and W2 at real latency", "latency": lat, "estate": estate,
          "default_max_requests": EMS_MAX_REQUESTS,
          "cold": {"runs": [], "runs_planned": RUNS_W6_COLD}, "noop": {"runs": []},
          "busy_before": loadavg()}
    # W6_APPEND=1: add rounds to an existing bench/out/w6.json (resume a cut-short run);
    # W6_COLD_TOOLS picks the tools of the cold rounds (default "ems skopeo"; "ems_parN" is ours with
    # --parallel N); W6_NOOP=0 skips the no-op
    if os.environ.get("W6_APPEND") == "1":
        old = json.load(open(os.path.join(OUT, "w6.json")))
        for part in ("cold", "noop"):
            w6[part]["runs"] = old.get(part, {}).get("runs", [])
            if old.get(part, {}).get("excluded_runs"):
                w6[part]["excluded_runs"] = old[part]["excluded_runs"]
        w6["busy_before"] = old.get("busy_before", w6["busy_before"])
    cold_tools = os.environ.get("W6_COLD_TOOLS", "ems skopeo").split()
    cold_first = 1 + max([r["run"] for r in w6["cold"]["runs"]] or [0])

    def write_w6():
        for part in ("cold", "noop"):
            rs = w6[part]["runs"]
            if not rs:
                continue
            tools = ["ems", "skopeo"] + sorted({x["tool"] for x in rs} - {"ems", "skopeo"})
            w6[part]["summary"] = summ(rs, tools)
            sm = w6[part]["summary"]
            if "ems" in sm and "skopeo" in sm:
                w6[part]["ratio_skopeo_over_ems"] = sm["skopeo"]["wall_median_s"] / sm["ems"]["wall_median_s"]
                for a in tools[2:]:
                    if a in sm:
                        w6[part][f"ratio_skopeo_over_{a}"] = sm["skopeo"]["wall_median_s"] / sm[a]["wall_median_s"]
            w6[part]["proxy_cpu"] = proxy_cpu(rs)
        w6["busy_after"] = loadavg()
        write("w6", w6)

    def cold_round(i):
        ecr.start(fresh=True)
        ecrp.start()
        order = ["skopeo", "ems"] if i % 2 else ["ems", "skopeo"]
        for tool in [t for t in order if t in cold_tools] + [t for t in cold_tools if t.startswith("ems_par")]:
            if tool == "ems":
                r = run(f"W6 cold ems {i}", "ems", ems_cmd, lenv(), ems_summary)
            elif tool.startswith("ems_par"):  # ours with --parallel N (images copied at once)
                r = run(f"W6 cold {tool} {i}", tool, ems_cmd, lenv(ECR_MIRROR_SYNC_PARALLEL=tool[7:]),
                        ems_summary)
            else:
                r = run(f"W6 cold skopeo {i}", "skopeo", sko_cmd(4), base_env)
            r["run"] = i
            w6["cold"]["runs"].append(r)
        write_w6()

    set_lat_tags(hub_host, 4)
    if "w6" in WORKLOADS:
        cold_round(cold_first)
        for i in range(1, RUNS + 1 if os.environ.get("W6_NOOP", "1") == "1" else 1):
            order = ["ems", "skopeo"] if i % 2 else ["skopeo", "ems"]
            for tool in order:
                if tool == "ems":
                    r = run(f"W6 no-op ems {i}", "ems", ems_cmd, lenv(), ems_summary, n_tags)
                else:
                    r = run(f"W6 no-op skopeo {i}", "skopeo", sko_cmd(4), base_env)
                r["run"] = i
                w6["noop"]["runs"].append(r)
            for a, n in alt:
                r = run(f"W6 no-op {a} {i}", a, ems_cmd, lenv(ECR_MIRROR_SYNC_MAX_REQUESTS=str(n)),
                        ems_summary, n_tags)
                r["run"] = i
                w6["noop"]["runs"].append(r)
            write_w6()

    # ---- W7: ours against a bare client's floor, at REPOS × W7_LEVELS tags
    if "w7" in WORKLOADS:
        import base64, threading
        basic = "Basic " + base64.b64encode(f"{ECR_USER}:{ECR_PASS}".encode()).decode()
        accept = ", ".join([OCI_I, OCI_M, "application/vnd.docker.distribution.manifest.list.v2+json",
                            "application/vnd.docker.distribution.manifest.v2+json"])

        def floor(ntags, in_flight):
            """One manifest HEAD per tag on each side, `in_flight` per registry (two pools at once),
            keep-alive connections per thread; upstream with Hub's flow (one anonymous token per
            repository scope, fetched by the first HEAD of that repository that needs it), ECR
            with Basic auth. Returns (seconds, requests per side)."""
            local = threading.local()
            tokens, locks = {}, {i: threading.Lock() for i in range(REPOS)}
            counts = {"hub": 0, "ecrp": 0}
            clock = threading.Lock()

            def conn(port):
                cs = getattr(local, "c", None)
                if cs is None:
                    cs = local.c = {}
                if port not in cs:
                    cs[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                return cs[port]

            def req(side, port, method, path, hdrs):
                c = conn(port)
                c.request(method, path, headers=hdrs)
                r = c.getresponse()
                body = r.read()
                with clock:
                    counts[side] += 1
                return r, body

            def token(i):
                with locks[i]:
                    if i not in tokens:
                        r, body = req("hub", hub.port, "GET", f"/token?service=registry.docker.io&scope="
                                      f"repository:{repo_name(i)}:pull", {})
                        assert r.status == 200, (r.status, body[:200])
                        tokens[i] = json.loads(body)["token"]
                    return tokens[i]

            def up_head(job):
                i, t = job
                r, _ = req("hub", hub.port, "HEAD", f"/v2/{repo_name(i)}/manifests/t{t}",
                           {"Accept": accept, "Authorization": f"Bearer {token(i)}"})
                assert r.status == 200 and r.getheader("Docker-Content-Digest"), (r.status, i, t)

            def ecr_head(job):
                i, t = job
                r, _ = req("ecrp", ecrp.port, "HEAD", f"/v2/lat/app-{i:03d}/manifests/t{t}",
                           {"Accept": accept, "Authorization": basic})
                assert r.status == 200 and r.getheader("Docker-Content-Digest"), (r.status, i, t)

            # tag-major order: the first `in_flight` HEADs go to different repositories, so their
            # tokens are fetched in parallel (repository-major order would queue the pool behind
            # one token fetch per repository: 50 × 100 ms)
            jobs = [(i, t) for t in range(ntags) for i in range(REPOS)]
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(in_flight) as a, cf.ThreadPoolExecutor(in_flight) as b:
                fa = a.map(up_head, jobs)
                fb = b.map(ecr_head, jobs)
                list(fa)
                list(fb)
            return time.perf_counter() - t0, counts

        def floor_run(label, ntags, in_flight):
            s0 = {p.name: p.snap() for p in pers}
            wall, counts = floor(ntags, in_flight)
            s1 = {p.name: p.snap() for p in pers}
            r = {"wall_s": wall, "max_rss_kib": 0, "cpu_s": 0.0, "requests_sent": counts,
                 "personality": {p.name: personality_delta(s0[p.name], s1[p.name]) for p in pers}}
            log(f"{label:24s} {wall*1000:9.0f} ms  sent hub {counts['hub']}, ecr {counts['ecrp']}")
            return r

        w7 = {"workload": "W7: no-op at real latency against a bare client's floor", "latency": lat,
              "default_max_requests": EMS_MAX_REQUESTS,
              "repos": REPOS, "levels": {}, "busy_before": loadavg()}
        levels_planned = [REPOS * t for t in W7_LEVELS]
        for ntags in W7_LEVELS:
            tags = REPOS * ntags
            if ntags > 4 or "w6" not in WORKLOADS:
                # prime without latency: moto points at the upstream registry itself, ours writes
                # straight to the ECR registry; then moto points at the Hub personality again
                set_lat_tags(f"127.0.0.1:{up.port}", ntags)
                r = timed(f"prime W7 {tags}", ems_cmd, env, (), ems_summary)
                log(f"primed W7 at {tags} tags (no latency) in {r['wall_s']:.1f} s: {r['ems_summary']}")
                set_lat_tags(hub_host, ntags)
            busy0 = loadavg()
            runs = []
            for i in range(1, RUNS + 1):
                order = ["ems", "floor"] if i % 2 else ["floor", "ems"]
                for what in order:
                    if what == "ems":
                        r = run(f"W7@{tags} ems {i}", "ems", ems_cmd, lenv(), ems_summary, tags)
                    else:
                        r = floor_run(f"W7@{tags} floor {i}", ntags, EMS_MAX_REQUESTS)
                        r["tool"] = "floor"
                    r["run"] = i
                    runs.append(r)
                for a, n in alt:
                    r = run(f"W7@{tags} {a} {i}", a, ems_cmd,
                            lenv(ECR_MIRROR_SYNC_MAX_REQUESTS=str(n)), ems_summary, tags)
                    r["run"] = i
                    runs.append(r)
                    r = floor_run(f"W7@{tags} floor{n} {i}", ntags, n)
                    r.update(tool=f"floor{n}", run=i)
                    runs.append(r)
            tools = ["ems", "floor"] + [x for a, n in alt for x in (a, f"floor{n}")]
            sm = summ(runs, tools)
            d = {"tags": tags, "tags_per_repo": ntags, "runs": runs, "summary": sm,
                 "ratio_ems_over_floor": sm["ems"]["wall_median_s"] / sm["floor"]["wall_median_s"],
                 "proxy_cpu": proxy_cpu(runs), "busy_before": busy0, "busy_after": loadavg()}
            for a, n in alt:
                d[f"ratio_{a}_over_floor{n}"] = sm[a]["wall_median_s"] / sm[f"floor{n}"]["wall_median_s"]
            w7["levels"][str(tags)] = d
            fits = {}
            xs = sorted(int(k) for k in w7["levels"])
            for tool in tools:
                pts = [(x, w7["levels"][str(x)]["summary"][tool]["wall_median_s"] * 1000) for x in xs
                       if tool in w7["levels"][str(x)]["summary"]]
                if len(pts) == 2:
                    (x0, y0), (x1, y1) = pts
                    slope = (y1 - y0) / (x1 - x0)
                    fits[tool] = {"ms_per_tag": slope, "constant_ms": y0 - slope * x0, "points": 2}
            w7.update(fit=fits, levels_planned=levels_planned, busy_after=loadavg())
            write("w7", w7)
        if "w6" in WORKLOADS and RUNS_W6_COLD > 1:
            set_lat_tags(hub_host, 4)
    if "w6" in WORKLOADS:
        for i in range(cold_first + 1, cold_first + RUNS_W6_COLD):
            cold_round(i)
        # W6_PROFILE=1: one no-op per --max-requests level with the personalities' state files
        # sampled every 50 ms (they are rewritten every 200 ms): completed requests over time, and
        # by Little's law the requests in flight (rate × delay), so it shows which phase of the
        # run waits on what.
        if os.environ.get("W6_PROFILE") == "1":
            import threading
            prof = {"delay_ms": {"hub": LAT_UP_MS, "ecrp": LAT_ECR_MS}, "levels": {}}
            for n in [16] + [x for x in LAT_ALT_MAX_REQUESTS if x != 16]:
                samples, stop = [], threading.Event()

                def sample():
                    last = None
                    while not stop.is_set():
                        st = {p.name: p.read() for p in pers}
                        key = tuple(st[k]["requests"] for k in ("hub", "ecrp"))
                        if key != last:
                            samples.append({"t": time.perf_counter(),
                                            "hub": st["hub"]["requests"], "ecrp": st["ecrp"]["requests"],
                                            "hub_kinds": st["hub"]["by_kind"]})
                            last = key
                        time.sleep(0.05)
                s0 = {p.name: p.snap() for p in pers}
                th = threading.Thread(target=sample, daemon=True)
                th.start()
                time.sleep(0.3)
                t0 = time.perf_counter()  # timed() starts its clock ≤ 0.1 s later (access-log marks)
                r = timed(f"W6 profile mr{n}", ems_cmd, lenv(ECR_MIRROR_SYNC_MAX_REQUESTS=str(n)), (up, ecr),
                          ems_summary)
                stop.set()
                th.join()
                s1 = {p.name: p.snap() for p in pers}
                r["personality"] = {p.name: personality_delta(s0[p.name], s1[p.name]) for p in pers}
                base = samples[0] if samples else {"hub": 0, "ecrp": 0}
                series = [{"t_s": round(x["t"] - t0, 3), "hub": x["hub"] - base["hub"],
                           "ecr": x["ecrp"] - base["ecrp"],
                           "hub_head": x["hub_kinds"].get("HEAD Manifest", 0) - base.get("hub_kinds", {}).get("HEAD Manifest", 0)}
                          for x in samples]
                inflight = []
                for a_, b_ in zip(series, series[1:]):
                    dt = b_["t_s"] - a_["t_s"]
                    if dt > 0:
                        inflight.append({"t_s": b_["t_s"], "hub_in_flight": round((b_["hub"] - a_["hub"]) / dt * LAT_UP_MS / 1000, 1)})
                first = next((x["t_s"] for x in series if x["hub"] > 0), None)
                first_head = next((x["t_s"] for x in series if x["hub_head"] > 0), None)
                last_head = next((x["t_s"] for x in series if x["hub_head"] >= n_tags), None)
                prof["levels"][str(n)] = {"wall_s": r["wall_s"], "series": series, "hub_in_flight": inflight,
                                          "first_hub_request_by_s": first, "first_hub_head_by_s": first_head,
                                          "last_hub_head_by_s": last_head, "personality": r["personality"]}
                log(f"profile mr{n}: wall {r['wall_s']:.2f} s, first hub request by {first} s, first HEAD by "
                    f"{first_head} s, all HEADs by {last_head} s, peak in flight "
                    f"{max([x['hub_in_flight'] for x in inflight] or [0])}")
            write("w6_profile", prof)
    hub.stop()
    ecrp.stop()
    shim.terminate()


if __name__ == "__main__":
    main()
