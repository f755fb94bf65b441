#!/usr/bin/env python3
"""Write a random image with big layers as an OCI layout, streaming, with no Docker.

Why not `.ci/gen_image.py`:
- it builds each layer in memory with `random.randbytes(size)`, which cannot make a 512 MiB
  layer (CPython's getrandbits() takes the bit count as a C int, so it overflows at 256 MiB);
- its layers are plain `tar`, and skopeo (containers/image) gzips uncompressed layers on every
  copy into a registry: the pushed image then has other digests than the layout, and a
  `skopeo copy` between registries would spend its time gzipping instead of copying.

Here every layer is a valid gzip stream of random bytes made of *stored* (uncompressed) deflate
blocks, written in 4 MiB chunks while hashing, with media type `tar+gzip`. skopeo sees gzip and
copies the blob as is, so `--preserve-digests` holds and both tools move the same bytes. The blob
is exactly --layer-size bytes (the random payload is ~0.008 % smaller: 5 bytes per 64 KiB block
plus the 18-byte gzip header and trailer). Nothing compresses. Memory stays under 40 MiB whatever
the size. Deterministic per --seed.

  gen_big_image.py DIR TAG [--platforms linux/amd64] [--layers 2] [--layer-size 536870912] [--seed N]

Prints the index digest.
"""
import argparse, hashlib, json, os, random, struct, zlib

BLOCK = 65535          # max payload of one stored deflate block
BLOCKS_PER_CHUNK = 64  # ~4 MiB of payload per write
GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])


def blob_bytes(root, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(root, "blobs", "sha256", d)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def payload_size(size):
    """Random payload bytes that make a stored-block gzip stream of exactly `size` bytes."""
    n = size - 18  # gzip header (10) + trailer (8)
    full, rem = divmod(n, BLOCK + 5)
    if rem == 0:
        return full * BLOCK
    if rem < 5:
        raise SystemExit(f"--layer-size {size} cannot be hit exactly; use another size")
    return full * BLOCK + rem - 5


def stored_blocks(data, last):
    out = []
    mv = memoryview(data)
    for off in range(0, len(data), BLOCK):
        part = mv[off:off + BLOCK]
        final = 1 if last and off + BLOCK >= len(data) else 0
        out.append(struct.pack("<BHH", final, len(part), 0xFFFF ^ len(part)))
        out.append(part)
    return b"".join(out)


def blob_random(root, seed, size):
    """A gzip (stored blocks) blob of exactly `size` bytes of random payload.
    Returns (descriptor, diff_id)."""
    r = random.Random(seed)
    h, raw = hashlib.sha256(), hashlib.sha256()
    crc, left = 0, payload_size(size)
    total = left
    tmp = os.path.join(root, "blobs", "sha256", f".tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(GZIP_HEADER)
        h.update(GZIP_HEADER)
        while left:
            n = min(BLOCK * BLOCKS_PER_CHUNK, left)
            data = r.randbytes(n)
            raw.update(data)
            crc = zlib.crc32(data, crc)
            left -= n
            out = stored_blocks(data, last=(left == 0))
            h.update(out)
            f.write(out)
        trailer = struct.pack("<II", crc, total & 0xFFFFFFFF)
        f.write(trailer)
        h.update(trailer)
        assert f.tell() == size, (f.tell(), size)
    d = h.hexdigest()
    os.replace(tmp, os.path.join(root, "blobs", "sha256", d))
    return {"digest": "sha256:" + d, "size": size}, "sha256:" + raw.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("tag")
    ap.add_argument("--platforms", default="linux/amd64")
    ap.add_argument("--layer-size", type=int, default=512 << 20)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entries = []
    for pi, plat in enumerate(a.platforms.split(",")):
        parts = plat.split("/")
        layers, diff_ids = [], []
        for li in range(a.layers):
            d, diff_id = blob_random(a.dir, f"{a.seed}-{pi}-{li}", a.layer_size)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d})
            diff_ids.append(diff_id)
        config = {"architecture": parts[1], "os": parts[0],
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {"Labels": {"seed": str(a.seed)}}}
        if len(parts) > 2:
            config["variant"] = parts[2]
        cd = blob_bytes(a.dir, json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
                    "layers": layers}
        md = blob_bytes(a.dir, json.dumps(manifest).encode())
        platform = {"architecture": parts[1], "os": parts[0]}
        if len(parts) > 2:
            platform["variant"] = parts[2]
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **md,
                        "platform": platform})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": entries}
    idx = blob_bytes(a.dir, json.dumps(index).encode())
    top = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", **idx,
         "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump(top, f)
    print(idx["digest"])


if __name__ == "__main__":
    main()
