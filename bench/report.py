#!/usr/bin/env python3
"""Regenerate docs/benchmarks.md (and docs/img/bench-*.png) from bench/out/*.json.

  python bench/report.py            # needs matplotlib for the charts (bench/run installs it)
  python bench/report.py --latency-section   # print only the W6/W7 section (no page written)

Missing JSON files are reported as "not measured" in the page instead of failing. The W3 prose
(workload, profile, floor) lives in bench/w3_notes.md and is included verbatim.
"""
import json, os, statistics, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
IMG = os.path.join(ROOT, "docs", "img")
NAMES = {"ems": "ecr-mirror-sync", "skopeo": "skopeo"}


def load(name):
    p = os.path.join(OUT, f"{name}.json")
    return json.load(open(p)) if os.path.exists(p) else None


def ms(s):
    return f"{s * 1000:,.0f} ms" if s < 10 else f"{s:,.1f} s"


def verdict(ok):
    return "**met**" if ok else "**MISSED**"


def req_cell(run):
    """Compact request count of one run: 'up N / ecr M'."""
    r = run.get("requests")
    if not r:
        return "–"
    return f"up {r['upstream']['total']} / ECR {r['ecr']['total']}"


def median_requests(runs, tool):
    rs = [r for r in runs if r["tool"] == tool and r.get("requests")]
    if not rs:
        return None
    return rs[0]["requests"], all(r["requests"] == rs[0]["requests"] for r in rs), len(rs)


def results_table(doc, tools=("ems", "skopeo"), label=None):
    lines = ["| tool | runs | median | min | max | peak RSS (max of runs) | median CPU | requests per run |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in tools:
        s = doc["summary"].get(t)
        if not s:
            continue
        mr = median_requests(doc["runs"], t)
        if mr:
            req, same, _ = mr
            rq = f"upstream {req['upstream']['total']}, ECR {req['ecr']['total']}" + \
                 ("" if same else " (first run; varies, see below)")
        else:
            rq = "–"
        lines.append(f"| {label or NAMES[t]} | {s['runs']} | **{ms(s['wall_median_s'])}** | "
                     f"{ms(s['wall_min_s'])} | {ms(s['wall_max_s'])} | {s['rss_max_mib']:.1f} MiB | "
                     f"{s['cpu_median_s']:.2f} s | {rq} |")
    return "\n".join(lines)


KINDS = ["ping", "manifest", "blob", "upload", "mount", "other"]


def request_table(doc):
    """Per tool, per registry: requests per kind and method (from the first run; 401s counted)."""
    lines = ["| tool | registry | total | 401 | manifest | blob | upload (`/blobs/uploads/`) | mount (`POST ?mount=`) | `/v2/` ping | other |",
             "|---|---|---:|---:|---|---|---|---|---|---|"]
    notes = []
    for t in ("ems", "skopeo"):
        mr = median_requests(doc["runs"], t)
        if not mr:
            continue
        req, same, n = mr
        if not same:
            totals = sorted((r["requests"]["upstream"]["total"], r["requests"]["ecr"]["total"])
                            for r in doc["runs"] if r["tool"] == t)
            notes.append(f"{NAMES[t]}: the counts differ between runs (upstream, ECR totals: "
                         f"{', '.join(f'{a}/{b}' for a, b in totals)}); the table shows run 1.")
        for reg in ("upstream", "ecr"):
            c = req[reg]
            row = [NAMES[t], "upstream" if reg == "upstream" else "ECR", str(c["total"]),
                   str(c["status"].get("401", 0))]
            for k in ("manifest", "blob", "upload", "mount", "ping", "other"):
                m = c["by_kind"].get(k, {})
                row.append(", ".join(f"{meth} {n}" for meth, n in sorted(m.items())) or "0")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def ok_counts(req, reg, kind, method):
    return req[reg]["by_kind_excluding_401"].get(kind, {}).get(method, 0)


def busy(doc):
    b0, b1 = doc.get("busy_before"), doc.get("busy_after")
    if not b0:
        return ""
    return (f"Machine load during this workload: load average {b0['loadavg']} before, "
            f"{b1['loadavg']} after; CPU pressure (some avg10/60/300) {b0['cpu_pressure']} → "
            f"{b1['cpu_pressure']}.")


def charts(w1, w2, w3, w5):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing; charts not regenerated", file=sys.stderr)
        return False
    os.makedirs(IMG, exist_ok=True)
    # W1–W3 bars: median wall time, min–max as error bars, one panel per workload
    panels = [(n, d) for n, d in (("W1 no-op sync", w1), ("W2 cold sync", w2), ("W3 big image", w3)) if d]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
        if len(panels) == 1:
            axes = [axes]
        for ax, (title, d) in zip(axes, panels):
            tools = [t for t in ("ems", "skopeo") if t in d["summary"]]
            med = [d["summary"][t]["wall_median_s"] for t in tools]
            lo = [m - d["summary"][t]["wall_min_s"] for m, t in zip(med, tools)]
            hi = [d["summary"][t]["wall_max_s"] - m for m, t in zip(med, tools)]
            bars = ax.bar([NAMES[t] for t in tools], med, yerr=[lo, hi], capsize=6,
                          color=["#2a7ab0", "#c0504d"][:len(tools)])
            for b, m in zip(bars, med):
                ax.annotate(f"{m:.2f} s", (b.get_x() + b.get_width() / 2, m), ha="center",
                            va="bottom", fontsize=9, xytext=(0, 3), textcoords="offset points")
            ax.set_title(title)
            ax.set_ylabel("wall time, s (median, min–max)")
        fig.tight_layout()
        fig.savefig(os.path.join(IMG, "bench-w1-w3.png"), dpi=110)
        plt.close(fig)
    if w5 and w5.get("levels"):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        xs = sorted(int(k) for k in w5["levels"])
        for t, col in (("ems", "#2a7ab0"), ("skopeo", "#c0504d")):
            pts = [(x, w5["levels"][str(x)]["summary"][t]) for x in xs if t in w5["levels"][str(x)]["summary"]]
            if not pts:
                continue
            px = [x for x, _ in pts]
            ax.errorbar(px, [s["wall_median_s"] for _, s in pts],
                        yerr=[[s["wall_median_s"] - s["wall_min_s"] for _, s in pts],
                              [s["wall_max_s"] - s["wall_median_s"] for _, s in pts]],
                        marker="o", capsize=4, color=col, label=NAMES[t])
            f = w5.get("fit", {}).get(t)
            if f:
                fx = [0, max(px)]
                ax.plot(fx, [(f["constant_ms"] + f["ms_per_tag"] * x) / 1000 for x in fx], "--",
                        color=col, alpha=0.5,
                        label=f"fit: {f['ms_per_tag']:.2f} ms/tag + {f['constant_ms']:.0f} ms")
        ax.set_xlabel("tags in the estate (50 repositories)")
        ax.set_ylabel("no-op wall time, s (median, min–max)")
        ax.set_title("W5: no-op sync scaling")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(IMG, "bench-w5.png"), dpi=110)
        plt.close(fig)
    return True


# requests in flight per registry of our default and of the floor: from the run's JSON (runs before
# 2026-12-04 carry none and were made at the then default, 16)
LAT_DEFAULT_MR = 16


def set_lat_default(w6, w7):
    global LAT_DEFAULT_MR
    LAT_DEFAULT_MR = (w7 or w6 or {}).get("default_max_requests", 16)


def lat_tool_name(t):
    if t == "ems":
        return f"ecr-mirror-sync (default, {LAT_DEFAULT_MR} in flight per registry)"
    if t.startswith("ems_mr"):
        return f"ecr-mirror-sync `--max-requests {t[6:]}`"
    if t.startswith("ems_par"):
        return f"ecr-mirror-sync `--parallel {t[7:]}`"
    if t == "floor":
        return f"floor: bare client, {LAT_DEFAULT_MR} in flight per registry"
    if t.startswith("floor"):
        return f"floor: bare client, {t[5:]} in flight per registry"
    return NAMES.get(t, t)


def lat_requests(run):
    """'Hub N (HEAD m, …) / ECR M': what the personalities handled during one run."""
    p = run.get("personality") or {}
    cells = []
    for name, label in (("hub", "Hub"), ("ecrp", "ECR")):
        d = p.get(name)
        if not d:
            continue
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(d["by_kind"].items(), key=lambda kv: -kv[1]))
        cells.append(f"{label} {d['requests']} ({kinds})" if kinds else f"{label} {d['requests']}")
    return "; ".join(cells) or "–"


def lat_table(runs, summary, tools):
    lines = ["| tool | runs | median | min | max | peak RSS | median CPU | requests handled by the personalities (first run; main listener by kind) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in tools:
        s = summary.get(t)
        if not s:
            continue
        first = next(r for r in runs if r["tool"] == t)
        rss = f"{s['rss_max_mib']:.1f} MiB" if s["rss_max_mib"] else "–"
        cpu = f"{s['cpu_median_s']:.2f} s" if s["rss_max_mib"] else "–"
        lines.append(f"| {lat_tool_name(t)} | {s['runs']} | **{ms(s['wall_median_s'])}** | {ms(s['wall_min_s'])} | "
                     f"{ms(s['wall_max_s'])} | {rss} | {cpu} | {lat_requests(first)} |")
    return "\n".join(lines)


def proxy_cpu_line(pc):
    parts = []
    for name, label in (("hub", "Hub personality"), ("ecrp", "ECR personality")):
        d = pc.get(name)
        if d and d["requests"]:
            parts.append(f"{label}: {d['requests']:,} requests, {d['cpu_ms']:,.0f} ms CPU, "
                         f"**{d['cpu_us_per_request']:.0f} µs per request**")
    return "; ".join(parts)


def latency_targets(w6, w7):
    """Rows for the targets table (issue 13 section 4)."""
    set_lat_default(w6, w7)
    rows = []
    if w6:
        for part, goal, label in (("noop", 100, "W6 no-op at real latency ≥ 100× faster than skopeo"),
                                  ("cold", 10, "W6 cold at real latency ≥ 10× faster than skopeo")):
            d = w6.get(part) or {}
            r = d.get("ratio_skopeo_over_ems")
            if r is None:
                rows.append(f"| {label} | not measured | – |")
                continue
            sm = d["summary"]
            alts = [k for k in d if k.startswith("ratio_skopeo_over_ems_")]
            extra = "".join(f"; {lat_tool_name(k.split('over_', 1)[1]).replace('ecr-mirror-sync ', 'with ')}: {d[k]:.1f}× "
                            f"({ms(sm[k.split('over_', 1)[1]]['wall_median_s'])}) {verdict(d[k] >= goal)}"
                            for k in alts)
            rows.append(f"| {label} | {r:.1f}× ({ms(sm['ems']['wall_median_s'])} vs "
                        f"{ms(sm['skopeo']['wall_median_s'])}){extra} | default {verdict(r >= goal)} |")
    if w7 and w7.get("levels"):
        top = max(w7["levels"], key=int)
        d = w7["levels"][top]
        r = d["ratio_ems_over_floor"]
        alts = [k for k in d if k.startswith("ratio_ems_mr")]
        extra = "".join(f"; `--max-requests {k.split('_')[2][2:]}` against the floor at the same concurrency: "
                        f"{d[k]:.2f}× {verdict(d[k] <= 1.5)}" for k in alts)
        f = (w7.get("fit") or {}).get("ems")
        lin = ""
        if f:
            fl = (w7.get("fit") or {}).get("floor") or {}
            lin = (f"; line through {', '.join(sorted(w7['levels'], key=int))} tags: {f['ms_per_tag']:.2f} ms/tag + "
                   f"{f['constant_ms']:.0f} ms (floor {fl.get('ms_per_tag', 0):.2f} ms/tag + {fl.get('constant_ms', 0):.0f} ms)")
        rows.append(f"| W7 no-op of {int(top):,} tags at real latency within 1.5× of a bare client's floor, linear in tags | "
                    f"{r:.2f}× ({ms(d['summary']['ems']['wall_median_s'])} vs floor {ms(d['summary']['floor']['wall_median_s'])}){extra}{lin} | "
                    f"default {verdict(r <= 1.5)} |")
    return rows


def latency_section(w6, w7):
    """The W6/W7 section (issue 13 section 4) as a list of lines; [] when neither was measured."""
    set_lat_default(w6, w7)
    if not w6 and not w7:
        return []
    o = []
    P = o.append
    lat = (w6 or w7)["latency"]
    P("## W6, W7 — at real latency (issue 13)\n")
    P(f"**Set-up.** The loopback registries of W1/W2, each behind a registry personality of the integration "
      f"tests run as a server (`bench/latency_proxy.md`): the upstream behind Docker Hub's manners "
      f"(anonymous bearer token per repository, pull budget headers, blob GETs redirected to a \"CDN\" listener) "
      f"with **{lat['upstream_ms']} ms** before every request, the \"ECR\" registry behind ECR's manners with "
      f"**{lat['ecr_ms']} ms**. moto (the ECR API) has no delay. Waits overlap for requests in flight in parallel, "
      f"so concurrency pays as it would against far registries. Estate `lat/app-NNN` in moto, `upstream-image` "
      f"pointing at the Hub personality; ours writes `lat/*`, skopeo `skopeo-lat/*`, both through the ECR "
      f"personality. Timed: `ecr-mirror-sync sync --output json --prefix lat` and `skopeo sync --all` over the "
      f"same tags, order swapped every round.\n")
    P("skopeo reads the upstream through `bench/hub_shim.py`, a pass-through that points the CDN redirect "
      "at `localhost` "
      "(Go keeps `Authorization` on a redirect to the same host name, and the CDN refuses it with 400; the real "
      "CDN is another host). The hop costs skopeo well under 1 ms per request against the 100 ms wait; its CPU "
      "is in `bench/out/w6.json` (`shim_cpu_s`).\n")
    if w6:
        for part, title, goal in (("noop", "W6 no-op (the W1 estate, 200 tags, already mirrored)", 100),
                                  ("cold", "W6 cold (the W2 estate into an empty destination)", 10)):
            d = w6.get(part) or {}
            P(f"### {title}\n")
            if not d.get("runs"):
                P("_Not measured in this run._\n")
                continue
            if part == "cold":
                got = d["summary"]["ems"]["runs"]
                if d.get("runs_planned") and got < d["runs_planned"]:
                    P(f"**{got} of {d['runs_planned']} planned round(s) measured** (time limit).\n")
                P("Before every round the \"ECR\" registry restarts on empty storage, and its personality with it.\n")
                counts = {t: v["runs"] for t, v in d["summary"].items()}
                if len(set(counts.values())) > 1:
                    P("Rounds per tool differ: " + ", ".join(f"{lat_tool_name(t)} {n}" for t, n in counts.items())
                      + " (a skopeo cold round takes minutes at this latency; the run had a time limit).\n")
                for x in d.get("excluded_runs", []):
                    P(f"Excluded: {lat_tool_name(x['tool'])} round {x['run']} ({x['wall_s']:.0f} s): "
                      f"{x.get('excluded_because', '')}.\n")
            tools = ["ems", "skopeo"] + sorted({r["tool"] for r in d["runs"]} - {"ems", "skopeo"})
            P(lat_table(d["runs"], d["summary"], tools) + "\n")
            P(f"**Ratio, skopeo / ours (median wall): {d['ratio_skopeo_over_ems']:.1f}×** (target ≥ {goal}×)"
              + "".join(f"; {lat_tool_name(k.split('over_', 1)[1]).replace('ecr-mirror-sync ', 'with ')}: {d[k]:.1f}×"
                        for k in d if k.startswith("ratio_skopeo_over_ems_")) + ".\n")
            P(f"Proxy CPU over all runs of this part: {proxy_cpu_line(d['proxy_cpu'])}.\n")
        P(busy(w6) + "\n")
    if w7 and w7.get("levels"):
        P("### W7 — the no-op against its floor\n")
        P("The W6 no-op at 50 repositories × 4 and × 20 tags (200 and 1,000 tags; the 1,000-tag destination is "
          "primed without latency, then moto points at the Hub personality again), and in the same rounds a "
          "**floor**: a bare Python client (`floor()` in `bench/harness.py`, threads and keep-alive "
          "`http.client`) sending only the HEADs the no-op needs, one manifest HEAD per tag on each side, "
          "with Hub's token flow (one anonymous token per repository scope, no challenge round trip) and ECR's "
          f"Basic auth, at the tool's default concurrency ({LAT_DEFAULT_MR} per registry, both registries at "
          "once). The floor does no "
          "discovery (moto), no ECR token and no process start; ours does.\n")
        P("| tags | tool | runs | median | min | max | ours / floor | requests handled (first run) |")
        P("|---:|---|---:|---:|---:|---:|---:|---|")
        for x in sorted(w7["levels"], key=int):
            d = w7["levels"][x]
            sm = d["summary"]
            for t in sorted(sm, key=lambda t: (t.startswith(("floor",)) and not t == "floor", t.replace("floor", "ems~"))):
                s = sm[t]
                first = next(r for r in d["runs"] if r["tool"] == t)
                ratio = ""
                if t == "ems":
                    ratio = f"**{d['ratio_ems_over_floor']:.2f}×**"
                elif t.startswith("ems_mr"):
                    k = f"ratio_{t}_over_floor{t[6:]}"
                    ratio = f"**{d[k]:.2f}×**" if k in d else ""
                P(f"| {int(x):,} | {lat_tool_name(t)} | {s['runs']} | **{ms(s['wall_median_s'])}** | "
                  f"{ms(s['wall_min_s'])} | {ms(s['wall_max_s'])} | {ratio} | {lat_requests(first)} |")
        P("")
        fits = w7.get("fit") or {}
        if fits:
            P("Lines through the medians (two points):\n")
            for t in sorted(fits):
                f = fits[t]
                P(f"- {lat_tool_name(t)}: **{f['ms_per_tag']:.2f} ms per tag + {f['constant_ms']:.0f} ms**")
            P("")
        for x in sorted(w7["levels"], key=int):
            d = w7["levels"][x]
            P(f"- {int(x):,} tags, proxy CPU over all runs: {proxy_cpu_line(d['proxy_cpu'])}. {busy(d)}")
        P("")
    notes = os.path.join(HERE, "latency_notes.md")
    if os.path.exists(notes):
        P(open(notes).read().strip() + "\n")
    return o


def main():
    if sys.argv[1:] == ["--latency-section"]:  # print only the W6/W7 section (to paste by hand)
        print("\n".join(latency_section(load("w6"), load("w7"))).rstrip())
        return
    env, w1, w2, w3, w4, w5 = (load(n) for n in ("env", "w1", "w2", "w3", "w4", "w5"))
    w6, w7 = load("w6"), load("w7")
    charts(w1, w2, w3, w5)
    o = []
    P = o.append
    P("# Benchmarks\n")
    P("<!-- Generated by `bench/report.py` from `bench/out/*.json` (`make bench`). Do not edit by hand: "
      "edit bench/report.py or bench/w3_notes.md. -->\n")
    P("`ecr-mirror-sync` measured side by side with `skopeo` on loopback services: `docker-registry` "
      "instances (an \"upstream\" one, and an \"ECR\" one with htpasswd auth, user `AWS` and moto's "
      "token as password) and moto for the ECR API. The scripts start and stop them themselves. "
      "Issue 7 defines the workloads W1–W5.\n")
    P("**Reproduce:** `make bench` (or `bash bench/run`). `RUNS=N` sets the rounds (default 5), "
      "`BIN=…` picks the binary, `SKIP_W3=1` reuses `bench/out/w3.json`, `WORKLOADS=\"w2 w1 w5 w4\"` "
      "picks workloads. Raw results, every run: `bench/out/*.json`. A full run takes roughly half an "
      "hour on the machine below; skopeo's cold syncs (W2, and priming W5's 800 tags) are most of it.\n")

    # ---- summary of targets
    P("## Targets\n")
    P("| target (issue 7) | measured | verdict |\n|---|---|---|")
    missing = []
    if w1:
        r = w1["ratio_skopeo_over_ems"]
        req = median_requests(w1["runs"], "ems")
        heads = ""
        if req:
            n_tags = w1["estate"]["tags"]
            heads_ok = True
            for run in (r for r in w1["runs"] if r["tool"] == "ems"):
                q = run["requests"]
                hu, he = ok_counts(q, "upstream", "manifest", "HEAD"), ok_counts(q, "ecr", "manifest", "HEAD")
                mg = sum(ok_counts(q, reg, "manifest", m) for reg in ("upstream", "ecr")
                         for m in ("GET", "PUT"))
                heads_ok = heads_ok and hu == n_tags and he == n_tags and mg == 0
            heads = (f"; manifest HEADs upstream {hu}, ECR {he} for {n_tags} tags; manifest GET+PUT {mg} "
                     f"({'in every run' if heads_ok else 'NOT in every run'})")
        P(f"| W1 no-op ≥ 15× faster than skopeo, one HEAD per tag per side, 0 manifest GET/PUT | "
          f"{r:.1f}× ({ms(w1['summary']['ems']['wall_median_s'])} vs {ms(w1['summary']['skopeo']['wall_median_s'])}){heads} | "
          f"speed {verdict(r >= 15)}; requests {verdict(heads_ok) if req else 'n/a'} |")
    else:
        missing.append("W1")
    if w2:
        r = w2["ratio_skopeo_over_ems"]
        q = median_requests(w2["runs"], "ems")
        txt = ""
        ok2 = None
        if q:
            uniq = w2["estate"]["unique_blobs"]
            runs_e = [r["requests"] for r in w2["runs"] if r["tool"] == "ems"]
            commits = sorted({ok_counts(x, "ecr", "upload", "PUT") for x in runs_e})
            mounts = sorted({ok_counts(x, "ecr", "mount", "POST") for x in runs_e})
            need = w2["estate"]["repos"] - 1  # the shared layer, into every repository but the first
            ok2 = commits == [uniq] and min(mounts) >= need
            txt = (f"; blob uploads (PUT commits) {'/'.join(map(str, commits))} for {uniq} unique blobs "
                   f"(every run); successful mount POSTs {'/'.join(map(str, mounts))} (≥ {need} needed "
                   f"for the shared layer)")
        P(f"| W2 cold ≥ 3× faster, blob uploads = unique blobs, shared layers mounted | "
          f"{r:.2f}× ({ms(w2['summary']['ems']['wall_median_s'])} vs {ms(w2['summary']['skopeo']['wall_median_s'])}){txt} | "
          f"speed {verdict(r >= 3)}; uploads {verdict(ok2) if ok2 is not None else 'n/a'} |")
    else:
        missing.append("W2")
    if w3:
        t = w3["targets"]
        P(f"| W3 big image ≤ 1.0× skopeo wall, ≤ 64 MiB RSS | "
          f"{w3['ratio_wall_median_ems_over_skopeo']:.2f}× ({w3['summary']['ems']['wall_median_s']:.2f} s vs "
          f"{w3['summary']['skopeo']['wall_median_s']:.2f} s); peak RSS {w3['summary']['ems']['rss_max_mib']:.1f} MiB | "
          f"wall {verdict(t['wall_met'])}; RSS {verdict(t['rss_met'])} |")
    else:
        missing.append("W3")
    if w4:
        m = w4["summary"]["ems"]["wall_median_s"]
        P(f"| W4 discovery of {w4['repositories']:,} repositories ≤ 2 s | {m:.2f} s (median) | {verdict(m <= 2)} |")
    else:
        missing.append("W4")
    if w5 and w5.get("fit", {}).get("ems"):
        f = w5["fit"]["ems"]
        P(f"| W5 no-op linear with a small constant | {f['ms_per_tag']:.2f} ms/tag + {f['constant_ms']:.0f} ms "
          f"(R² {f['r2']:.3f}, {f['points']} points) | see W5 |")
    else:
        missing.append("W5")
    for row in latency_targets(w6, w7):
        P(row)
    if not w6:
        missing.append("W6")
    if not w7:
        missing.append("W7")
    P("")
    if missing:
        P(f"**Not measured in this run:** {', '.join(missing)}.\n")
    if os.path.exists(os.path.join(HERE, "profile_notes.md")):
        P("Where a target is missed, [Where the time goes](#where-the-time-goes-w1-w2-w4--the-missed-targets) "
          "below profiles the run. In short: on this 2-core machine, the local registries "
          "and moto set the pace (bcrypt auth on every ECR request, moto's CPU), not our process.\n")
    notes_path = os.path.join(HERE, "status_notes.md")
    if os.path.exists(notes_path):
        P(open(notes_path).read().strip() + "\n")

    # ---- hand-written figures of the latest round (bench/round_notes.md), kept verbatim
    round_path = os.path.join(HERE, "round_notes.md")
    if os.path.exists(round_path):
        P(open(round_path).read().strip() + "\n")

    # ---- machine
    P("## Machine and versions\n")
    P("| | |\n|---|---|")
    if env:
        mch = env["machine"]
        dates = [(n, d["date"]) for n, d in (("W1", w1), ("W2", w2), ("W3", w3), ("W4", w4), ("W5", w5))
                 if d and d.get("date")]
        P("| Date (results written, UTC) | " + ", ".join(f"{n} {t.replace('T', ' ')[:16]}" for n, t in dates) + " |")
        P(f"| CPU | `nproc` = {mch['nproc']}, {mch.get('cpu', '?')} |")
        P(f"| Memory | {mch['mem_total_kib'] / 2**20:.1f} GiB total |")
        P(f"| Kernel | {mch['kernel']} |")
        P(f"| Load at the end of the run | load average {mch['load_at_end']['loadavg']}, CPU pressure "
          f"{mch['load_at_end']['cpu_pressure']} |")
        for k, v in env["versions"].items():
            P(f"| {k} | `{v}` |")
        P(f"| Binary | `{env['binary']}` (release build) |")
        P(f"| Rounds per workload | {env['runs']} (W2: see its section) |")
        g = env.get("generation") or {}
        if g:
            P(f"| Upstream estate | {g['repos']} repositories × {g['tags_per_repo']} tags, "
              f"{g['unique_blobs']:,} blobs, pushed by `bench/harness.py` in {g['seconds']:.1f} s |")
    P("")
    loads = []
    for d in (w1, w2, w4):
        for k in ("busy_before", "busy_after"):
            if d and d.get(k):
                loads.append(float(d[k]["loadavg"].split()[0]))
    for lvl in (w5 or {}).get("levels", {}).values():
        for k in ("busy_before", "busy_after"):
            if lvl.get(k):
                loads.append(float(lvl[k]["loadavg"].split()[0]))
    if loads:
        nproc = (env or {}).get("machine", {}).get("nproc", 2)
        peak = max(loads)
        shared = peak > nproc + 2
        P(f"**Machine load.** The 1-minute load average recorded around the workloads ranged "
          f"{min(loads):.1f}–{peak:.1f} on {nproc} cores. The benchmark itself (three servers and the "
          f"tool under test) keeps it near {nproc}–{nproc + 1}; "
          + ("**a higher peak means other jobs shared the machine during this run**, so absolute "
             "times are pessimistic. " if shared else "no other jobs ran during this run. ")
          + "The two tools ran interleaved under the same conditions, with their order swapped every "
          "round.\n")

    # ---- W1
    P("## W1 — no-op sync\n")
    P("**Workload.** 50 repositories × 4 tags = 200 tags upstream. Each tag is an OCI index of 2 "
      "platforms (`linux/amd64`, `linux/arm64`); each platform has a config and 2 layers of 64 KiB "
      "(gzip media type), the first layer shared by the whole estate. 50 ECR repositories in moto "
      "carry `upstream-image`/`upstream-tags`. Both tools start from an already-mirrored "
      "destination (the W2 round before left both fully mirrored):\n")
    P("- ours: `ecr-mirror-sync sync --output json` (ECR auth through moto, `--registry-endpoint` to "
      "the local \"ECR\" registry); every run must exit 0 with `copied: 0, skipped: 200`.")
    P("- peer: `skopeo sync --all --insecure-policy --src yaml --dest docker --dest-creds AWS:… "
      "--dest-tls-verify=false bench.yaml 127.0.0.1:ECR/skopeo-mirror` over the same 200 tags.\n")
    if w1:
        P(results_table(w1) + "\n")
        P(f"**Ratio, skopeo / ours (median wall): {w1['ratio_skopeo_over_ems']:.1f}×** (target ≥ 15×).\n")
        if w1["runs"] and w1["runs"][0].get("ems_summary") is not None:
            s = [r["ems_summary"] for r in w1["runs"] if r["tool"] == "ems"]
            P(f"Our summary line in every run: copied {s[0]['copied']}, skipped {s[0]['skipped']}, "
              f"failed {s[0]['failed']}; our own `duration_secs` median "
              f"{statistics.median(x['duration_secs'] for x in s) * 1000:.0f} ms.\n")
        P("**Requests per run** (registries' access logs, one run; 401 challenges included in the "
          "totals and counted separately):\n")
        P(request_table(w1) + "\n")
        P(busy(w1) + "\n")
    else:
        P("_Not measured in this run._\n")

    # ---- W2
    P("## W2 — cold sync\n")
    P("**Workload.** The W1 estate into an empty destination. Before every round the \"ECR\" "
      "registry restarts on fresh, empty storage; then both tools run, order swapped every round. "
      "They write disjoint repositories (`mirror/*` and `skopeo-mirror/*`). Unique blobs in the "
      "estate: 1 shared layer + 200 tags × 2 platforms × (1 layer + 1 config) = 801; manifests: "
      "600 (200 indexes + 400 platform manifests).\n")
    if w2:
        planned = w2["estate"].get("runs_planned")
        got = w2["summary"]["ems"]["runs"]
        if planned and got < 5:
            P(f"**Only {got} round(s) were measured** (planned {planned}; issue 7 asks for ≥ 5). "
              "A skopeo cold sync of this estate takes minutes on this loaded machine, and the run "
              "had a hard time limit. Treat the spread accordingly.\n")
        P(results_table(w2) + "\n")
        P(f"**Ratio, skopeo / ours (median wall): {w2['ratio_skopeo_over_ems']:.2f}×** (target ≥ 3×).\n")
        P("**Requests per run:**\n")
        P(request_table(w2) + "\n")
        P(busy(w2) + "\n")
    else:
        P("_Not measured in this run._\n")

    # ---- W3
    P("## W3 — big image\n")
    if w3:
        P(f"Measured by `bench/w3.sh` ({w3['date']}); `make bench` re-runs it unless `SKIP_W3=1`.\n")
        P("| tool | runs | median wall | min | max | peak RSS (max of runs) | median RSS | median CPU (user+sys) |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t, name in (("ems", "ecr-mirror-sync copy"), ("skopeo", "skopeo copy --all")):
            s = w3["summary"][t]
            P(f"| {name} | {s['runs']} | **{s['wall_median_s']:.2f} s** | {s['wall_min_s']:.2f} s | "
              f"{s['wall_max_s']:.2f} s | {s['rss_max_mib']:.1f} MiB | {s['rss_median_mib']:.1f} MiB | "
              f"{s['cpu_median_s']:.2f} s |")
        P("")
        r = w3["ratio_wall_median_ems_over_skopeo"]
        P(f"**Ratio of median wall times, ours / skopeo: {r:.2f}×** (skopeo / ours: {1 / r:.2f}×). "
          f"Median throughput {w3['summary']['ems']['throughput_median_mib_s']:.0f} MiB/s ours, "
          f"{w3['summary']['skopeo']['throughput_median_mib_s']:.0f} MiB/s skopeo. Machine: "
          f"{w3['machine']['busy_before_runs']} before, {w3['machine']['busy_after_runs']} after.\n")
        P("<details><summary>Per-run numbers</summary>\n")
        P("| round | ecr-mirror-sync wall | RSS | CPU | skopeo wall | RSS | CPU |\n|---:|---:|---:|---:|---:|---:|---:|")
        by = {(x["tool"], x["run"]): x for x in w3["runs"]}
        for n in sorted({x["run"] for x in w3["runs"]}):
            e, s = by.get(("ems", n)), by.get(("skopeo", n))
            P(f"| {n} ({'ours' if n % 2 else 'skopeo'} first) | {e['wall_s']:.2f} s | {e['max_rss_kib'] / 1024:.1f} MiB | "
              f"{e['cpu_s']:.2f} s | {s['wall_s']:.2f} s | {s['max_rss_kib'] / 1024:.1f} MiB | {s['cpu_s']:.2f} s |")
        P("\n</details>\n")
    else:
        P("_Not measured in this run._\n")
    notes = os.path.join(HERE, "w3_notes.md")
    if os.path.exists(notes):
        txt = open(notes).read()
        if txt.startswith("<!--"):
            txt = txt.split("-->", 1)[1]
        P(txt.strip() + "\n")

    # ---- chart W1-W3
    if os.path.exists(os.path.join(IMG, "bench-w1-w3.png")):
        P("### W1–W3 at a glance\n")
        P("![W1–W3 median wall time, min–max bars](img/bench-w1-w3.png)\n")

    # ---- W4
    P("## W4 — discovery\n")
    P("**Workload.** A moto of its own holding exactly 1,000 ECR repositories, each tagged with "
      "`upstream-image`/`upstream-tags`. Timed: `ecr-mirror-sync list --output json` (discovery only: "
      "DescribeRepositories, then ListTagsForResource per repository, 16 in flight). Every run must "
      "print 1,000 `repository` lines with no error. skopeo has no equivalent.\n")
    if w4:
        tbl = results_table(w4, tools=("ems",), label="ecr-mirror-sync list")
        calls = sorted({r.get("moto_requests") for r in w4["runs"]})
        tbl = tbl.replace("| – |", f"| {'/'.join(map(str, calls))} ECR API calls (moto) |")
        P(tbl + "\n")
        calls = sorted({r.get("moto_requests") for r in w4["runs"]})
        P(f"ECR API calls per run (moto's request log): {', '.join(map(str, calls))}. "
          f"Creating the 1,000 repositories took {w4['create_seconds']:.1f} s (once).\n")
        P(busy(w4) + "\n")
    else:
        P("_Not measured in this run._\n")

    # ---- W5
    P("## W5 — scaling of the no-op\n")
    P("**Workload.** The W1 no-op at 50 repositories × 1, 4 and 16 tags (50, 200, 800 tags), "
      "moto's `upstream-tags` rewritten between levels; a line fitted through the medians.\n")
    if w5 and w5.get("levels"):
        P("| tags | ours median | min | max | peak RSS | skopeo median | min | max | peak RSS | skopeo / ours |")
        P("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in sorted(int(k) for k in w5["levels"]):
            d = w5["levels"][str(x)]["summary"]
            e = d["ems"]
            row = f"| {x} | **{ms(e['wall_median_s'])}** | {ms(e['wall_min_s'])} | {ms(e['wall_max_s'])} | {e['rss_max_mib']:.1f} MiB |"
            if "skopeo" in d:
                s = d["skopeo"]
                row += (f" **{ms(s['wall_median_s'])}** | {ms(s['wall_min_s'])} | {ms(s['wall_max_s'])} | "
                        f"{s['rss_max_mib']:.1f} MiB | {s['wall_median_s'] / e['wall_median_s']:.1f}× |")
            else:
                row += " not measured | | | | |"
            P(row)
        P("")
        for t in ("ems", "skopeo"):
            f = w5.get("fit", {}).get(t)
            if f:
                P(f"- {NAMES[t]}: **{f['ms_per_tag']:.2f} ms per tag + {f['constant_ms']:.0f} ms** "
                  f"(least squares over {f['points']} medians, R² = {f['r2']:.3f}).")
        planned = set(w5.get("levels_planned", []))
        done = {int(k) for k in w5["levels"]}
        if planned - done:
            P(f"- Levels not measured: {', '.join(map(str, sorted(planned - done)))} tags.")
        nosk = [k for k, v in w5["levels"].items() if "skopeo" not in v["summary"]]
        if nosk:
            P(f"- skopeo not measured at {', '.join(sorted(nosk, key=int))} tags: bringing its "
              "destination to the mirrored state at that size (a cold skopeo sync of 600 more tags) "
              "did not fit in the run's time limit on this machine.")
        P("")
        if os.path.exists(os.path.join(IMG, "bench-w5.png")):
            P("![W5 no-op wall time against the number of tags](img/bench-w5.png)\n")
        for x in sorted(int(k) for k in w5["levels"]):
            b = busy(w5["levels"][str(x)])
            if b:
                P(f"- {x} tags: {b}")
        P("")
    else:
        P("_Not measured in this run._\n")

    for line in latency_section(w6, w7):
        P(line)

    profile = os.path.join(HERE, "profile_notes.md")
    if os.path.exists(profile):
        P(open(profile).read().strip() + "\n")

    P("## How the estate is made\n")
    P("`bench/harness.py` pushes the upstream estate itself, with a small Python stdlib client over "
      "keep-alive HTTP (`POST` + monolithic `PUT ?digest=` per blob, `PUT` per manifest, 8 threads), "
      "instead of writing OCI layouts and running skopeo per tag. Each 64 KiB layer is a valid gzip "
      "stream (one stored deflate block of random bytes) with the `tar+gzip` media type, so skopeo "
      "copies it as is rather than compressing it. 50 repositories × 16 tags (W5's largest level; "
      "W1/W2 use `t0`–`t3`) are pushed in about 20 s. The tagged ECR repositories are created in moto "
      "with boto3 from `.venv`.\n")
    P("Request counts come from the registries' access logs (`docker-registry` writes one Apache "
      "combined line per request to stdout), sliced by byte offset around each run, and classified by "
      "path: `manifest` (`/manifests/`), `upload` (`/blobs/uploads/`, except a `POST ?mount=` which "
      "is counted as `mount`), `blob` (`/blobs/<digest>`), `/v2/` ping, other.\n")

    with open(DOC, "w") as f:
        f.write("\n".join(o).rstrip() + "\n")
    print(f"report: wrote {os.path.relpath(DOC, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
