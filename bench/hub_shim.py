#!/usr/bin/env python3
"""A pass-through for skopeo in front of the Docker Hub personality (W6, bench/harness.py).

    hub_shim.py LISTEN_PORT HUB_MAIN_PORT

The shim forwards every request unchanged and rewrites only:
  - `WWW-Authenticate`: the realm to the shim, so skopeo's token requests cross the same hop as
    the rest (its token answer's `issued_at` is RFC 3339 now, as Hub sends it; until 2026-12-04 it
    was an HTTP date, which skopeo refused, and the shim rewrote it);
  - `Location` of the CDN redirect: host `127.0.0.1` to `localhost`. Go's client keeps
    `Authorization` on a redirect to the same host name on another port, and the CDN refuses a
    request with `Authorization` (400), as Docker Hub's does. Against the real Hub the CDN is
    another host, so Go drops the header; `localhost` restores that.
It costs skopeo one loopback hop per request (well under 1 ms against the 100 ms wait); its own
CPU is reported next to W6 (`shim_cpu_s`).
"""
import http.client, http.server, socketserver, sys, threading

LISTEN, HUB = int(sys.argv[1]), int(sys.argv[2])
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "content-length"}
local = threading.local()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        hdrs = {}
        for k, v in self.headers.items():  # repeated headers (skopeo sends Accept once per type)
            if k.lower() not in HOP and k.lower() != "host":
                hdrs[k] = f"{hdrs[k]}, {v}" if k in hdrs else v
        hdrs["Host"] = f"127.0.0.1:{HUB}"
        for attempt in range(2):
            c = getattr(local, "c", None)
            if c is None:
                c = local.c = http.client.HTTPConnection("127.0.0.1", HUB, timeout=120)
            try:
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, OSError):
                c.close()
                local.c = None
                if attempt:
                    raise
        self.send_response(r.status)
        for k, v in r.getheaders():
            lk = k.lower()
            if lk in HOP:
                continue
            if lk == "www-authenticate":
                v = v.replace(f"http://127.0.0.1:{HUB}/", f"http://127.0.0.1:{LISTEN}/")
            if lk == "location":
                v = v.replace("http://127.0.0.1:", "http://localhost:")
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                              r.getheader("Content-Length") or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


S(("127.0.0.1", LISTEN), H).serve_forever()
