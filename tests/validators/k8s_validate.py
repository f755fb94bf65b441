"""Validate Kubernetes manifests against the real JSON schemas of given Kubernetes versions, in strict mode.

Used by tests/validators.rs. Reads a JSON array of manifests on stdin (the Rust test renders the chart with helm
and converts each YAML document); the arguments are Kubernetes versions such as 1.27.0. Prints one JSON line per
manifest and version: {"kind", "name", "version", "ok", "error"}. Exits 1 if any manifest fails, including a kind
the schemas do not know (SchemaNotFoundError): nothing is skipped here.
"""

import json
import sys

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, VersionNotSupportedError


def main() -> int:
    versions = sys.argv[1:]
    if not versions:
        print("usage: k8s_validate.py VERSION... < manifests.json", file=sys.stderr)
        return 2
    docs = json.load(sys.stdin)
    failed = False
    for doc in docs:
        for version in versions:
            result = {
                "kind": doc.get("kind"),
                "name": (doc.get("metadata") or {}).get("name"),
                "version": version,
                "ok": True,
                "error": None,
            }
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                result.update(ok=False, error=f"{path}: {e.message}")
            except (SchemaNotFoundError, VersionNotSupportedError) as e:
                result.update(ok=False, error=f"{type(e).__name__}: {e}")
            failed |= not result["ok"]
            print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
