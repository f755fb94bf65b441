// Validate PrometheusRule objects against the JSON schema generated from the Prometheus Operator's CRD, with npm
// @kubernetes-models/prometheus-operator (installed by .ci/install-crd-validator.sh into .tools/crd-validator).
// Used by tests/validators.rs. Reads a JSON array of objects on stdin; argv[2] is that node_modules directory.
// Prints one JSON line per object: {"name", "ok", "error"}; exits 1 if any fails.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: prometheus_rule_validate.mjs NODE_MODULES_DIR < objects.json");
  process.exit(2);
}
const { PrometheusRule } = await import(
  pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js")).href
);
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const doc of JSON.parse(input)) {
  const result = { name: doc?.metadata?.name ?? null, ok: true, error: null };
  try {
    if (doc?.apiVersion !== "monitoring.coreos.com/v1" || doc?.kind !== "PrometheusRule") {
      throw new Error(`not a monitoring.coreos.com/v1 PrometheusRule: ${doc?.apiVersion} ${doc?.kind}`);
    }
    new PrometheusRule(doc).validate();
  } catch (e) {
    result.ok = false;
    result.error = String(e?.message ?? e);
    failed = true;
  }
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
