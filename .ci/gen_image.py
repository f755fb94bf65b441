#!/usr/bin/env python3
"""Write a random multi-platform image as an OCI layout, with no Docker.

Used by `make demo` and the benchmarks; `skopeo copy --all oci:DIR:TAG docker://...` pushes it.
Layers are random bytes (registries do not look inside them), deterministic per --seed.

  gen_image.py DIR TAG [--platforms linux/amd64,linux/arm64] [--layer-size 65536]
               [--layers 2] [--shared-seed N] [--seed N]

With --shared-seed, the first layer of every platform is the same blob for a given shared
seed, like a common base layer.
"""
import argparse, hashlib, json, os, random


def blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(root, "blobs", "sha256", d)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def rand_bytes(seed, size):
    r = random.Random(seed)
    return r.randbytes(size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("tag")
    ap.add_argument("--platforms", default="linux/amd64,linux/arm64")
    ap.add_argument("--layer-size", type=int, default=65536)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shared-seed", type=int, default=None)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entries = []
    for pi, plat in enumerate(a.platforms.split(",")):
        parts = plat.split("/")
        layers = []
        for li in range(a.layers):
            if li == 0 and a.shared_seed is not None:
                data = rand_bytes(f"shared-{a.shared_seed}", a.layer_size)
            else:
                data = rand_bytes(f"{a.seed}-{pi}-{li}", a.layer_size)
            d = blob(a.dir, data)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **d})
        config = {"architecture": parts[1], "os": parts[0],
                  "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
                  "config": {"Labels": {"seed": str(a.seed)}}}
        if len(parts) > 2:
            config["variant"] = parts[2]
        cd = blob(a.dir, json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
                    "layers": layers}
        md = blob(a.dir, json.dumps(manifest).encode())
        platform = {"architecture": parts[1], "os": parts[0]}
        if len(parts) > 2:
            platform["variant"] = parts[2]
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **md, "platform": platform})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    idx = blob(a.dir, json.dumps(index).encode())
    top = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **idx,
                                              "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}
    path = os.path.join(a.dir, "index.json")
    if os.path.exists(path):
        old = json.load(open(path))
        keep = [m for m in old.get("manifests", [])
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.tag]
        top["manifests"] = keep + top["manifests"]
    with open(path, "w") as f:
        json.dump(top, f)
    print(idx["digest"])


if __name__ == "__main__":
    main()
