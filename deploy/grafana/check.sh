#!/usr/bin/env bash
# check.sh - checks the Grafana dashboard without Grafana.
#
#   deploy/grafana/check.sh [SCRAPE.txt ...]
#
# 1. Structure: valid JSON, uid/title/schemaVersion, a prometheus datasource
#    variable and a job variable, unique panel ids, every panel on the
#    ${datasource} variable, gridPos inside the 24-column grid, every target
#    with a refId and an expr, no template variable used that is not defined.
# 2. PromQL: every panel expr, with $__rate_interval -> 5m and the template
#    variables replaced by literals, becomes a recording rule in a temporary
#    file checked by `promtool check rules`.
# 3. With SCRAPE files (Prometheus text format, e.g. `curl -s
#    127.0.0.1:9103/metrics > retriever.txt` from a running stack), also
#    reports every metric the dashboard queries that no scrape exposes.
#
# Needs /usr/bin/python3 (stdlib only) and promtool (Debian `prometheus`).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dashboard=${DASHBOARD:-$here/quarry-dashboard.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

command -v promtool >/dev/null || { echo "check.sh: promtool not found (apt-get install prometheus)" >&2; exit 1; }

/usr/bin/python3 - "$dashboard" "$tmp/rules.yml" "$tmp/metrics.txt" <<'PY'
import json, re, sys

path, rules_out, metrics_out = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
with open(path) as f:
    d = json.load(f)

for key in ("uid", "title", "schemaVersion", "time", "refresh", "templating", "panels"):
    if key not in d:
        errors.append(f"dashboard: missing {key}")

variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("templating: need a 'datasource' variable of type datasource, query prometheus")
job = variables.get("job")
if not job or job.get("type") != "query" or "label_values(" not in json.dumps(job.get("query")):
    errors.append("templating: need a 'job' query variable using label_values(...)")

# Literal each variable stands for in the PromQL check.
literal = {"job": "quarry-gateway", "datasource": "prometheus"}
builtin = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
           "__range_s": "3600", "__interval_ms": "60000"}
var_re = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

def substitute(expr, where):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in builtin:
            return builtin[name]
        if name not in variables:
            errors.append(f"{where}: uses undefined variable ${name}")
            return "x"
        return literal.get(name, "x")
    return var_re.sub(repl, expr)

ids = set()
exprs = []
def walk(panels):
    for p in panels:
        where = f"panel {p.get('id')} '{p.get('title')}'"
        if "id" not in p:
            errors.append(f"{where}: no id")
        elif p["id"] in ids:
            errors.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(k in g for k in ("h", "w", "x", "y")) or g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24:
            errors.append(f"{where}: bad gridPos {g}")
        if p.get("type") == "row":
            walk(p.get("panels", []))
            continue
        if not p.get("title"):
            errors.append(f"{where}: no title")
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            errors.append(f"{where}: datasource must be {{type: prometheus, uid: ${{datasource}}}}")
        if "unit" not in p.get("fieldConfig", {}).get("defaults", {}):
            errors.append(f"{where}: no fieldConfig.defaults.unit")
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"{where}: no targets")
        refs = set()
        for t in targets:
            if not t.get("refId") or t["refId"] in refs:
                errors.append(f"{where}: missing or duplicate refId")
            refs.add(t.get("refId"))
            if not t.get("expr", "").strip():
                errors.append(f"{where}: target {t.get('refId')} has no expr")
                continue
            exprs.append((where, t["refId"], substitute(t["expr"], where)))
walk(d.get("panels", []))

for name, v in variables.items():
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
    if v.get("type") == "query" and isinstance(q, str):
        m = re.match(r"label_values\((.*),\s*(\w+)\)\s*$", q)
        if not m:
            errors.append(f"variable {name}: query must be label_values(<selector>, <label>)")
        else:
            exprs.append((f"variable {name}", "query", substitute(m.group(1), f"variable {name}")))

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)

with open(rules_out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, ref, e) in enumerate(exprs):
        f.write(f"      # {where} {ref}\n")
        f.write(f"      - record: dashboard:expr_{i}\n")
        f.write("        expr: " + json.dumps(e) + "\n")

# Metric names: identifiers followed by { or ( are selectors or functions;
# keep those that are not PromQL functions or keywords.
functions = set("""abs absent absent_over_time avg avg_over_time bottomk by ceil changes clamp
clamp_max clamp_min count count_over_time count_values days_in_month day_of_month day_of_week
delta deriv exp floor group histogram_quantile holt_winters hour idelta increase irate
label_join label_replace last_over_time ln log10 log2 max max_over_time min min_over_time
minute month predict_linear present_over_time quantile quantile_over_time rate resets round
scalar sgn sort sort_desc sqrt stddev stddev_over_time stdvar stdvar_over_time sum
sum_over_time time timestamp topk vector without year on ignoring group_left group_right
and or unless offset bool label_values""".split())
names = set()
for _, _, e in exprs:
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(?=\{|\[|\)|$|\s*[-+*/<>=!]|\s+(?:and|or|unless)\b)", stripped):
        n = m.group(1)
        if n not in functions and not n.isdigit():
            names.add(n)
with open(metrics_out, "w") as f:
    f.write("\n".join(sorted(names)) + "\n")
print(f"dashboard: {len(ids)} panels, {len(exprs)} queries, {len(names)} metrics: structure OK")
PY

promtool check rules "$tmp/rules.yml"

if [ $# -gt 0 ]; then
  /usr/bin/python3 - "$tmp/metrics.txt" "$@" <<'PY'
import re, sys
wanted = [l.strip() for l in open(sys.argv[1]) if l.strip()]
exposed = {"up"}
for path in sys.argv[2:]:
    for line in open(path):
        # A family declared with # TYPE counts even before its first series
        # (labelled counters have none until something happens).
        m = re.match(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", line)
        if m:
            exposed.add(m.group(1))
            if m.group(2) == "histogram":
                exposed.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
            continue
        if line.startswith("#") or not line.strip():
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        exposed.add(name)
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                exposed.add(name[: -len(suffix)])
missing = [n for n in wanted if n not in exposed]
if missing:
    print("metrics the dashboard queries but no scrape exposes:", file=sys.stderr)
    for n in missing:
        print("  " + n, file=sys.stderr)
    sys.exit(1)
print(f"every one of the {len(wanted)} metrics the dashboard queries is exposed")
PY
fi
