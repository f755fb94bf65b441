#!/usr/bin/env python3
"""W4 profile: where does `list` over 1,000 tagged repositories spend its time?

Starts its own moto (loopback), creates N tagged repositories, then, for RUNS rounds, alternating:
  - ems:   `ecr-mirror-sync list --output json` (wall, via /usr/bin/time -v)
  - floor: the same ECR API calls with no client logic at all: one DescribeRepositories pass, then
           N ListTagsForResource POSTs over keep-alive http.client connections, C in flight
           (C = 16, what discovery uses). This is what moto itself needs to answer them.
  - ems --debug once, with timestamps, to split start-up / DescribeRepositories / tag reads.
Writes bench/out/w4_floor.json.   Env: BIN, RUNS (5), N (1000), C (16)
"""
import concurrent.futures as cf, http.client, json, os, re, socket, statistics, subprocess, sys
import tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.environ["BIN"]
RUNS = int(os.environ.get("RUNS", "5"))
N = int(os.environ.get("N", "1000"))
C = int(os.environ.get("C", "16"))
VPY = os.path.join(ROOT, ".venv", "bin", "python")

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
work = tempfile.mkdtemp(prefix="w4floor.")
moto = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                        stdout=open(os.path.join(work, "moto.log"), "wb"), stderr=subprocess.STDOUT)
try:
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/moto-api/")
            c.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    aws = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    subprocess.run([VPY, "-c", r'''
import sys, boto3, concurrent.futures as cf
ecr = boto3.client("ecr")
def one(i):
    ecr.create_repository(repositoryName=f"disc/app-{i:04d}", tags=[
        {"Key": "upstream-image", "Value": f"127.0.0.1:5000/up/app-{i % 50:03d}"},
        {"Key": "upstream-tags", "Value": "t0/t1/t2/t3"}])
with cf.ThreadPoolExecutor(8) as ex: list(ex.map(one, range(int(sys.argv[1]))))
''', str(N)], env=aws, check=True)

    HDR = {"Content-Type": "application/x-amz-json-1.1",
           "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecr/aws4_request, "
                            "SignedHeaders=host, Signature=0"}

    def call(conn, target, body):
        conn.request("POST", "/", body=json.dumps(body), headers=dict(HDR, **{"X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{target}"}))
        r = conn.getresponse(); data = r.read()
        assert r.status == 200, (r.status, data[:200])
        return json.loads(data)

    local = threading.local()

    def conn():
        if not hasattr(local, "c"):
            local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return local.c

    def floor():
        t0 = time.perf_counter()
        arns, tok = [], None
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            b = {"maxResults": 1000}
            if tok:
                b["nextToken"] = tok
            r = call(c, "DescribeRepositories", b)
            arns += [x["repositoryArn"] for x in r["repositories"]]
            tok = r.get("nextToken")
            if not tok:
                break
        t1 = time.perf_counter()
        with cf.ThreadPoolExecutor(C) as ex:
            list(ex.map(lambda a: call(conn(), "ListTagsForResource", {"resourceArn": a}), arns))
        t2 = time.perf_counter()
        return {"describe_s": t1 - t0, "list_tags_s": t2 - t1, "wall_s": t2 - t0, "repos": len(arns)}

    env = dict(aws, ECR_MIRROR_SYNC_REGISTRY_ENDPOINT="http://127.0.0.1:1")
    res = {"ems": [], "floor": []}

    def ems():
        tf = os.path.join(work, "t")
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", "-o", tf, BIN, "list", "--output", "json"], env=env,
                           capture_output=True, text=True)
        w = time.perf_counter() - t0
        assert p.returncode == 0, p.stderr
        n = sum(1 for l in p.stdout.splitlines() if '"repository"' in l)
        cpu = sum(float(l.rsplit(" ", 1)[1]) for l in open(tf) if "User time" in l or "System time" in l)
        return {"wall_s": w, "cpu_s": cpu, "repos": n}

    for i in range(RUNS):
        for what in (("ems", "floor") if i % 2 == 0 else ("floor", "ems")):
            r = ems() if what == "ems" else floor()
            res[what].append(r)
            print(f"w4_floor: {what:5s} round {i + 1}: {r['wall_s'] * 1000:.0f} ms {r}", file=sys.stderr)
    # one --debug run with timestamps: when does the first / last ECR call happen?
    t0 = time.time()
    p = subprocess.run([BIN, "list", "--output", "json", "--debug", "--log-format", "json"], env=env,
                       capture_output=True, text=True)
    dbg = p.stderr.splitlines()
    open(os.path.join(HERE, "out", "w4_debug.log"), "w").write(p.stderr)
    summ = {k: {"median_s": statistics.median(x["wall_s"] for x in v), "min_s": min(x["wall_s"] for x in v),
                "max_s": max(x["wall_s"] for x in v)} for k, v in res.items()}
    summ["ems"]["cpu_median_s"] = statistics.median(x["cpu_s"] for x in res["ems"])
    summ["floor"]["list_tags_median_s"] = statistics.median(x["list_tags_s"] for x in res["floor"])
    summ["floor"]["describe_median_s"] = statistics.median(x["describe_s"] for x in res["floor"])
    la = open("/proc/loadavg").read().split()[:3]
    json.dump({"runs": res, "summary": summ, "concurrency": C, "repos": N, "loadavg": " ".join(la),
               "debug_lines": len(dbg)},
              open(os.path.join(HERE, "out", "w4_floor.json"), "w"), indent=2)
    print(json.dumps(summ, indent=2))
finally:
    moto.terminate(); moto.wait()
    import shutil; shutil.rmtree(work, ignore_errors=True)
