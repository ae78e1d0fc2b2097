// Validates Kubernetes objects offline against kubernetes-models' compiled
// OpenAPI schemas (types, required fields, formats, enums). Reads a JSON
// array of [file, index, object] from stdin; prints one line per object;
// exits 1 if any is invalid or of a kind it does not know. Unknown field
// names are not caught here (the schemas allow them): strict.ts, checked
// by tsc, catches those. Run by tests/deploy/test_k8s.py.
import { readFileSync } from "node:fs";

const docs = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const [file, index, obj] of docs) {
  const where = `${file}#${index} ${obj.kind}/${obj.metadata?.name}`;
  // apiVersion "apps/v1" -> kubernetes-models/apps/v1/DaemonSet; "v1" -> kubernetes-models/v1/ConfigMap
  const path = `kubernetes-models/${obj.apiVersion}/${obj.kind}`;
  let Model;
  try {
    Model = (await import(path))[obj.kind];
  } catch (e) {
    console.log(`INVALID ${where}: no schema for ${obj.apiVersion} ${obj.kind} (${e.code ?? e.message})`);
    bad++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`valid   ${where}`);
  } catch (e) {
    console.log(`INVALID ${where}: ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
