#!/usr/bin/env python3
"""Profile the local registry itself: CPU per manifest HEAD with and without htpasswd auth.

Starts two docker-registry instances on loopback (one plain, one with the bench's htpasswd file:
bcrypt, `htpasswd -B` default cost), sends N HEADs for a manifest that does not exist (the auth
check runs first either way) with 16 in flight over keep-alive connections, and measures each
registry's CPU (/proc/PID/stat). With PERF=1 it also records `perf` on the auth registry.
Writes bench/out/registry_cpu.json (and registry_perf.txt).   Env: N (default 1000), PERF
"""
import base64, concurrent.futures as cf, http.client, json, os, shutil, socket, subprocess, sys
import tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
N = int(os.environ.get("N", "1000"))
work = tempfile.mkdtemp(prefix="regcpu.")
procs = []


def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start(name, auth):
    p = port()
    d = os.path.join(work, name); os.makedirs(d + "/s")
    with open(d + "/c.yml", "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {d}/s}}}}\n"
                f"http: {{addr: 127.0.0.1:{p}}}\n")
        if auth:
            f.write(f"auth: {{htpasswd: {{realm: bench, path: {work}/htpasswd}}}}\n")
    pr = subprocess.Popen(["docker-registry", "serve", d + "/c.yml"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    procs.append(pr)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=2); c.request("GET", "/v2/")
            c.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    return p, pr


def cpu(pr):
    f = open(f"/proc/{pr.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


try:
    open(os.path.join(work, "htpasswd"), "w").write(subprocess.run(
        ["htpasswd", "-Bbn", "AWS", "123456789012-auth-token"], capture_output=True, text=True).stdout)
    hdr = {"Authorization": "Basic " + base64.b64encode(b"AWS:123456789012-auth-token").decode(),
           "Accept": "application/vnd.oci.image.index.v1+json"}
    out = {}
    for name, auth in (("plain", False), ("basic-auth", True)):
        p, pr = start(name, auth)
        local = threading.local()

        def head(i):
            if not hasattr(local, "c"):
                local.c = http.client.HTTPConnection("127.0.0.1", p, timeout=30)
            local.c.request("HEAD", f"/v2/app-{i % 50:03d}/manifests/t{i % 4}", headers=hdr)
            r = local.c.getresponse(); r.read()
            return r.status
        perf = None
        if auth and os.environ.get("PERF") == "1" and shutil.which("perf"):
            perf = subprocess.Popen(["perf", "record", "-q", "-g", "-p", str(pr.pid), "-o",
                                     os.path.join(work, "perf.data")], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        c0 = cpu(pr); t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(16) as ex:
            codes = list(ex.map(head, range(N)))
        wall = time.perf_counter() - t0; c1 = cpu(pr)
        out[name] = {"requests": N, "wall_s": wall, "server_cpu_s": c1 - c0,
                     "server_cpu_ms_per_request": (c1 - c0) * 1000 / N,
                     "statuses": sorted(set(codes))}
        print(f"registry_cpu: {name}: {N} HEADs in {wall:.2f} s, registry CPU {c1 - c0:.2f} s "
              f"({(c1 - c0) * 1000 / N:.2f} ms/request), statuses {sorted(set(codes))}", file=sys.stderr)
        if perf:
            perf.send_signal(2); perf.wait()
            rep = subprocess.run(["perf", "report", "-i", os.path.join(work, "perf.data"), "--stdio",
                                  "--no-children", "--percent-limit", "2", "--sort", "sym", "-g", "none"],
                                 capture_output=True, text=True).stdout
            open(os.path.join(HERE, "out", "registry_perf.txt"), "w").write(rep)
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    json.dump(out, open(os.path.join(HERE, "out", "registry_cpu.json"), "w"), indent=2)
finally:
    for pr in procs:
        pr.terminate(); pr.wait()
    shutil.rmtree(work, ignore_errors=True)
