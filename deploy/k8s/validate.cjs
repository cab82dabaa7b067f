// validate.cjs - the Node half of deploy/k8s/check.sh. Modules come from the
// tools directory check.sh installs with npm (outside the repo).
//
//   node validate.cjs TOOLS manifests FILE...        every document of each
//        multi-document YAML file: kubernetes-models' schema validation
//        (types, required fields, enums, formats) plus a TypeScript
//        excess-property check against the same models (unknown or
//        misspelled fields).
//   node validate.cjs TOOLS values SCHEMA BASE [OVERRIDE...]   Helm values
//        (BASE deep-merged with each OVERRIDE, as `helm -f` does) against
//        values.schema.json with ajv (draft-07, as Helm).
//   node validate.cjs TOOLS same A B                 A and B hold the same
//        objects (YAML parsed, comments and formatting ignored).
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [, , tools, mode, ...args] = process.argv;
if (!tools || !mode) {
  console.error("usage: validate.cjs TOOLS manifests|values|same ...");
  process.exit(2);
}
const req = createRequire(path.join(path.resolve(tools), "package.json"));
const YAML = req("yaml");

function docsOf(file) {
  const out = [];
  for (const d of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

// apiVersion -> module holding the models of that group/version.
function modelModule(apiVersion) {
  if (apiVersion.startsWith("monitoring.coreos.com/"))
    return "@kubernetes-models/prometheus-operator/" + apiVersion;
  return "kubernetes-models/" + apiVersion;
}

function manifests(files) {
  const ts = req("typescript");
  let failures = 0;
  const lines = [];
  const imports = new Set();
  let n = 0;
  for (const file of files) {
    for (const doc of docsOf(file)) {
      const where = `${path.basename(file)}: ${doc.kind}/${doc.metadata && doc.metadata.name}`;
      if (!doc.apiVersion || !doc.kind) {
        console.error(`${where}: no apiVersion or kind`);
        failures++;
        continue;
      }
      const mod = modelModule(doc.apiVersion);
      let Model;
      try {
        Model = req(mod)[doc.kind];
      } catch (e) {
        Model = undefined;
      }
      if (!Model) {
        console.error(`${where}: no model for ${doc.apiVersion} ${doc.kind}`);
        failures++;
        continue;
      }
      try {
        new Model(doc).validate();
      } catch (e) {
        console.error(`${where}: ${e.message}`);
        failures++;
      }
      const alias = `I${doc.kind}_${n}`;
      imports.add(`import type { I${doc.kind} as ${alias} } from "${mod}/${doc.kind}";`);
      lines.push(`// ${where}\nexport const doc${n}: ${alias} = ${JSON.stringify(doc)};`);
      n++;
    }
  }

  // Excess-property check: a typo such as "readinesProbe" passes the schema
  // (Kubernetes schemas allow unknown fields) but not TypeScript.
  const work = fs.mkdtempSync(path.join(path.resolve(tools), "work-"));
  try {
    const file = path.join(work, "manifests.ts");
    fs.writeFileSync(file, [...imports, ...lines].join("\n") + "\n");
    const program = ts.createProgram([file], {
      noEmit: true, strict: true, skipLibCheck: true,
      module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16,
      types: [],
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, "\n").slice(0, 400);
      let where = "";
      if (d.file && d.start !== undefined) {
        const { line } = d.file.getLineAndCharacterOfPosition(d.start);
        const prev = d.file.text.split("\n")[line - 1] || "";
        where = prev.replace(/^\/\/ /, "") + ": ";
      }
      console.error(`${where}${msg}`);
      failures++;
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  if (failures) {
    console.error(`manifests: ${failures} problem(s)`);
    process.exit(1);
  }
  console.log(`manifests: ${n} objects valid (schema and field names)`);
}

function merge(dst, src) {
  for (const [k, v] of Object.entries(src || {})) {
    if (v && typeof v === "object" && !Array.isArray(v) &&
        dst[k] && typeof dst[k] === "object" && !Array.isArray(dst[k])) merge(dst[k], v);
    else dst[k] = v;
  }
  return dst;
}

function values(schemaFile, base, overrides) {
  const Ajv = req("ajv");
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, "utf8")));
  const v = docsOf(base)[0] || {};
  for (const o of overrides) merge(v, docsOf(o)[0] || {});
  const label = [base, ...overrides].map((f) => path.basename(f)).join(" + ");
  if (!validate(v)) {
    for (const e of validate.errors)
      console.error(`${label}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
    process.exit(1);
  }
  console.log(`values: ${label} matches ${path.basename(schemaFile)}`);
}

function same(a, b) {
  const key = (d) => `${d.kind}/${d.metadata && d.metadata.name}`;
  const da = docsOf(a), db = docsOf(b);
  const ma = new Map(da.map((d) => [key(d), d])), mb = new Map(db.map((d) => [key(d), d]));
  const diffs = [];
  for (const k of ma.keys()) if (!mb.has(k)) diffs.push(`only in ${a}: ${k}`);
  for (const k of mb.keys()) if (!ma.has(k)) diffs.push(`only in ${b}: ${k}`);
  const canon = (v) => JSON.stringify(v, (k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.keys(x).sort().map((kk) => [kk, x[kk]])) : x);
  for (const [k, d] of ma) if (mb.has(k) && canon(d) !== canon(mb.get(k))) diffs.push(`differs: ${k}`);
  if (diffs.length) {
    console.error(diffs.join("\n"));
    process.exit(1);
  }
  console.log(`same: ${path.basename(a)} and ${path.basename(b)} hold the same ${da.length} objects`);
}

try {
  if (mode === "manifests") manifests(args);
  else if (mode === "values") values(args[0], args[1], args.slice(2));
  else if (mode === "same") same(args[0], args[1]);
  else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
