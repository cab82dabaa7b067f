#!/usr/bin/python3
"""milvus_fake.py - a loopback Milvus REST v2 server for tests (docs/milvus.md).

Implements, in memory, the endpoints Quarry's Milvus client calls, as Milvus
2.5 documents them (POST {base}/v2/vectordb/<category>/<action>, JSON bodies,
replies {"code": 0, "data": ...}, failures as HTTP 200 with code != 0):

  collections/create, has, describe, load, release, get_load_state, drop
  entities/upsert, insert, delete, query, search, hybrid_search

It does real work so results mean something: cosine similarity for
FloatVector fields, BM25 (k1, b from the index params) for a
SparseFloatVector produced by a BM25 function, RRF and weighted reranking for
hybrid_search, and a parser of Milvus filter expressions (==, !=, <, <=, >,
>=, in, not in, &&, ||, and, or, not, parentheses, ARRAY_CONTAINS,
ARRAY_CONTAINS_ANY/ALL, JSON field access json["k"]["k2"], JSON_CONTAINS,
JSON_CONTAINS_ANY/ALL; function names in any case) with Go-style string
escapes, as Milvus reads them. On a JSON key, as Milvus documents it, a
comparison is false when the key is missing or holds a value of another type
(a boolean is not a number), and `not` of it is true; on a scalar field a
comparison with a literal of another type fails the request (code 1100).

Stricter than Milvus on purpose: a search, query or delete of a collection
with a partition key must have `<key> == "<value>"` as a top-level conjunct
of its filter (code 1100 otherwise), so a client that forgets its tenant
filter fails its tests; only a count(*) query and a lookup by primary key
(`<pk> in [...]` at the top level) may go without it.

BM25 statistics are the collection's, as in Milvus: the rows a filter drops
still count in the document count, average length and frequencies.

Switches for tests (not part of Milvus), under /_fake/:
  POST /_fake/fault  {"mode": M, "times": N (1), "path": "entities/search"
                      (any), "code": C, "delay_ms": D}
      modes: http500, http503, http429, code (HTTP 200 with code C),
      malformed (HTTP 200, not JSON), nocode (HTTP 200, JSON without code),
      truncated (Content-Length longer than the body, then close), slow
      (sleep D ms, then answer), auth (HTTP 401, code 1800), leak (search
      ignores the filter). Faults queue up and each serves `times` requests.
  POST /_fake/reset  {"data": true} clears faults and counters (and the data).
  GET  /_fake/stats  {"requests": {path: n}, "last": {path: body}}.

Run: milvus_fake.py [--port N] [--port-file F] [--token user:password]
A port of 0 (the default) lets the kernel choose; the port is written to
--port-file once the server listens. With --token every request needs
"Authorization: Bearer <token>" (HTTP 401, code 1800 otherwise).
"""

import argparse
import json
import math
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
DBS = {}  # db name -> {collection name -> Collection}
FAULTS = []  # [{"mode", "times", "path", "code", "delay_ms"}]
STATS = {"requests": {}, "last": {}}
TOKEN = None

STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the "
    "their then there these they this to was will with".split())


class MilvusError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def bad(msg, code=1100):
    raise MilvusError(code, msg)


# ---- filter expressions ------------------------------------------------------

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*')
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<op>==|!=|<=|>=|&&|\|\||<|>|\(|\)|\[|\]|,|!)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
""", re.X | re.S)

SIMPLE_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
              "v": "\v", "\\": "\\", "'": "'", '"': '"'}


def unquote(lit):
    """A Milvus string literal's value, with Go's escapes (strconv.Unquote)."""
    q, body, out, i = lit[0], lit[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            if ch == q:
                bad("unescaped quote in string literal")
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= len(body):
            bad("string literal ends in a backslash")
        e = body[i]
        if e in SIMPLE_ESC:
            if e in "'\"" and e != q:
                bad("invalid escape \\%s in string literal" % e)
            out.append(SIMPLE_ESC[e])
            i += 1
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 1:i + 1 + n]
            if len(digits) != n or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                bad("invalid \\%s escape in string literal" % e)
            out.append(chr(int(digits, 16)))
            i += 1 + n
        elif e in "01234567":
            digits = body[i:i + 3]
            if not re.fullmatch(r"[0-7]{3}", digits):
                bad("invalid octal escape in string literal")
            out.append(chr(int(digits, 8)))
            i += 3
        else:
            bad("invalid escape \\%s in string literal" % e)
    return "".join(out)


def tokenize(s):
    toks, pos = [], 0
    while pos < len(s):
        m = TOKEN_RE.match(s, pos)
        if not m:
            bad("cannot parse filter at offset %d: %r" % (pos, s[pos:pos + 20]))
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        text = m.group(kind)
        if kind == "str":
            toks.append(("lit", unquote(text)))
        elif kind == "num":
            toks.append(("lit", float(text) if re.search(r"[.eE]", text) else int(text)))
        elif kind == "id" and text.lower() in ("and", "or", "not", "in"):
            toks.append(("op", {"and": "&&", "or": "||", "not": "!", "in": "in"}[text.lower()]))
        elif kind == "id" and text in ("true", "false", "True", "False"):
            toks.append(("lit", text.lower() == "true"))
        else:
            toks.append((kind, text))
    return toks


class Parser:
    """expr := and ('||' and)*; and := unary ('&&' unary)*;
    unary := '!' unary | '(' expr ')' | func | field cmp value | field [not] in list"""

    def __init__(self, text):
        self.t = tokenize(text)
        self.i = 0

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

    def take(self, kind=None, val=None):
        tk = self.peek()
        if tk[0] is None or (kind and tk[0] != kind) or (val is not None and tk[1] != val):
            bad("filter: expected %s, got %r" % (val or kind, tk[1]))
        self.i += 1
        return tk

    def parse(self):
        if not self.t:
            bad("filter is empty")
        e = self.expr()
        if self.i != len(self.t):
            bad("filter: unexpected %r" % (self.peek()[1],))
        return e

    def expr(self):
        e = self.conj()
        while self.peek() == ("op", "||"):
            self.i += 1
            e = ("or", e, self.conj())
        return e

    def conj(self):
        e = self.unary()
        while self.peek() == ("op", "&&"):
            self.i += 1
            e = ("and", e, self.unary())
        return e

    def value_list(self):
        self.take("op", "[")
        vals = []
        while self.peek() != ("op", "]"):
            vals.append(self.take("lit")[1])
            if self.peek() != ("op", "]"):
                self.take("op", ",")
        self.take("op", "]")
        return vals

    def ref(self, name):
        """A column name, or ("json", column, (key, ...)) for column["k"]["k2"]."""
        keys = []
        while self.peek() == ("op", "["):
            self.i += 1
            k = self.take("lit")[1]
            if not isinstance(k, str):
                bad("filter: a JSON key must be a string literal")
            keys.append(k)
            self.take("op", "]")
        return ("json", name, tuple(keys)) if keys else name

    def unary(self):
        tk = self.peek()
        if tk == ("op", "!"):
            self.i += 1
            return ("not", self.unary())
        if tk == ("op", "("):
            self.i += 1
            e = self.expr()
            self.take("op", ")")
            return e
        name = self.take("id")[1]
        if name.upper() in FUNCTIONS:
            fn = name.upper()
            self.take("op", "(")
            field = self.ref(self.take("id")[1])
            self.take("op", ",")
            arg = self.value_list() if fn.endswith(("_ANY", "_ALL")) else self.take("lit")[1]
            self.take("op", ")")
            return ("fn", fn, field, arg)
        name = self.ref(name)
        op = self.take("op")[1]
        if op == "!" and self.peek() == ("op", "in"):
            self.i += 1
            return ("not", ("in", name, self.value_list()))
        if op == "in":
            return ("in", name, self.value_list())
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            bad("filter: unknown operator %r" % op)
        return ("cmp", op, name, self.take("lit")[1])


FUNCTIONS = ("ARRAY_CONTAINS_ANY", "ARRAY_CONTAINS_ALL", "ARRAY_CONTAINS",
             "JSON_CONTAINS_ANY", "JSON_CONTAINS_ALL", "JSON_CONTAINS")
MISSING = object()


def jeq(a, b):
    """Equality of a JSON value and a literal as Milvus compares them: values
    of different types (a bool is not a number) are never equal."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) == type(b) and isinstance(a, str) and a == b


def jcmp(op, a, b):
    """A comparison of a JSON value: false when the key is missing or the
    types differ (Milvus does not fail the expression for it)."""
    if a is MISSING:
        return False
    if op in ("==", "!="):
        return jeq(a, b) if op == "==" else not jeq(a, b)
    num = (lambda x: isinstance(x, (int, float)) and not isinstance(x, bool))
    if not ((num(a) and num(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def conjuncts(e):
    if e[0] == "and":
        return conjuncts(e[1]) + conjuncts(e[2])
    return [e]


def evaluate(e, row, fields):
    kind = e[0]
    if kind == "and":
        return evaluate(e[1], row, fields) and evaluate(e[2], row, fields)
    if kind == "or":
        return evaluate(e[1], row, fields) or evaluate(e[2], row, fields)
    if kind == "not":
        return not evaluate(e[1], row, fields)

    def field(name):
        if isinstance(name, tuple):
            col = name[1]
            if col not in fields or fields[col]["type"] != "JSON":
                bad("filter: %s is not a JSON field" % col, 1700)
            v = row.get(col)
            for k in name[2]:
                if not isinstance(v, dict) or k not in v:
                    return MISSING
                v = v[k]
            return v
        if name not in fields:
            bad("filter: field %s not found" % name, 1700)
        return row.get(name)
    if kind == "in":
        v = field(e[1])
        if isinstance(e[1], tuple):
            return v is not MISSING and any(jeq(v, x) for x in e[2])
        return v in e[2]
    if kind == "fn":
        v = field(e[2])
        if e[1].startswith("JSON_"):
            if not isinstance(e[2], tuple):
                bad("filter: %s takes a JSON field" % e[1])
            if not isinstance(v, list):
                return False  # missing, or not a list: contains nothing
            has = (lambda x: any(jeq(item, x) for item in v))
        else:
            if isinstance(e[2], tuple) or fields[e[2]]["type"] != "Array":
                bad("filter: %s takes an ARRAY field" % e[1])
            v = v or []
            has = (lambda x: x in v)
        if e[1].endswith("_ANY"):
            return any(has(x) for x in e[3])
        if e[1].endswith("_ALL"):
            return all(has(x) for x in e[3])
        return has(e[3])
    op, name, lit = e[1], e[2], e[3]
    v = field(name)
    if isinstance(name, tuple):
        return jcmp(op, v, lit)
    if isinstance(v, str) != isinstance(lit, str):
        bad("filter: %s compared with a value of another type" % name)
    return {"==": v == lit, "!=": v != lit, "<": v < lit, "<=": v <= lit,
            ">": v > lit, ">=": v >= lit}[op]


# ---- collections --------------------------------------------------------------

TYPES = {"Bool", "Int8", "Int16", "Int32", "Int64", "Float", "Double", "VarChar", "JSON",
         "Array", "FloatVector", "SparseFloatVector"}


def terms(text):
    """The fake's analyzer: lower-cased words, English stop words dropped."""
    return [t for t in re.findall(r"\w+", text.lower()) if t not in STOPWORDS]


class Collection:
    def __init__(self, req):
        schema = req.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
            bad("schema with fields is required (this fake has no quick-setup mode)")
        self.name = req["collectionName"]
        self.fields = {}
        self.order = []
        self.pk = self.partition_key = None
        self.dynamic = bool(schema.get("enableDynamicField", False))
        for f in schema["fields"]:
            name, dtype = f.get("fieldName"), f.get("dataType")
            if not isinstance(name, str) or dtype not in TYPES:
                bad("field %r: unknown dataType %r" % (name, dtype))
            if name in self.fields:
                bad("duplicate field %s" % name)
            params = dict(f.get("elementTypeParams") or {})
            if dtype == "FloatVector" and not (isinstance(params.get("dim"), int) and params["dim"] > 0):
                bad("field %s: FloatVector needs elementTypeParams.dim" % name)
            if dtype == "VarChar" and not isinstance(params.get("max_length"), int):
                bad("field %s: VarChar needs elementTypeParams.max_length" % name)
            if dtype == "Array":
                if f.get("elementDataType") not in ("VarChar", "Int64") or \
                        not isinstance(params.get("max_capacity"), int):
                    bad("field %s: Array needs elementDataType and max_capacity" % name)
            if f.get("isPrimary"):
                if self.pk or dtype not in ("Int64", "VarChar"):
                    bad("one Int64 or VarChar primary key is required", 1806)
                self.pk = name
            if f.get("isPartitionKey"):
                if self.partition_key or dtype not in ("Int64", "VarChar"):
                    bad("one Int64 or VarChar partition key at most")
                self.partition_key = name
            self.fields[name] = {"type": dtype, "params": params,
                                 "element": f.get("elementDataType"), "function_output": False}
            self.order.append(name)
        if not self.pk:
            bad("a primary key field is required", 1806)
        self.bm25 = {}  # output sparse field -> input text field
        for fn in schema.get("functions") or []:
            if fn.get("type") != "BM25":
                bad("function type %r not supported" % fn.get("type"))
            ins, outs = fn.get("inputFieldNames") or [], fn.get("outputFieldNames") or []
            if len(ins) != 1 or len(outs) != 1:
                bad("a BM25 function has one input and one output field")
            src, dst = self.fields.get(ins[0]), self.fields.get(outs[0])
            if not src or src["type"] != "VarChar" or not src["params"].get("enable_analyzer"):
                bad("BM25 input %s must be a VarChar with enable_analyzer" % ins[0])
            if not dst or dst["type"] != "SparseFloatVector":
                bad("BM25 output %s must be a SparseFloatVector" % outs[0])
            dst["function_output"] = True
            self.bm25[outs[0]] = ins[0]
        self.functions = schema.get("functions") or []
        self.indexes = {}
        for ip in req.get("indexParams") or []:
            fname = ip.get("fieldName")
            if fname not in self.fields:
                bad("index on unknown field %r" % fname, 1700)
            ftype = self.fields[fname]["type"]
            metric = ip.get("metricType")
            if ftype == "FloatVector" and metric not in ("COSINE", "IP", "L2"):
                bad("metric %r not supported for FloatVector" % metric)
            if ftype == "SparseFloatVector" and fname in self.bm25 and metric != "BM25":
                bad("a BM25 function output needs metricType BM25")
            self.indexes[fname] = ip
        vectors = [n for n, f in self.fields.items() if f["type"].endswith("Vector")]
        if not vectors:
            bad("a collection needs a vector field")
        # Milvus loads at create when every vector field has an index.
        self.state = "LoadStateLoaded" if all(v in self.indexes for v in vectors) else "LoadStateNotLoad"
        self.rows = {}

    def describe(self):
        fields = []
        for name in self.order:
            f = self.fields[name]
            d = {"name": name, "type": f["type"], "primaryKey": name == self.pk,
                 "partitionKey": name == self.partition_key, "autoId": False,
                 "description": "", "clusteringKey": False, "nullable": False,
                 "params": [{"key": k, "value": str(v).lower() if isinstance(v, bool) else
                             (json.dumps(v) if isinstance(v, dict) else str(v))}
                            for k, v in f["params"].items()]}
            if f["element"]:
                d["elementType"] = f["element"]
            if f["function_output"]:
                d["isFunctionOutput"] = True
            fields.append(d)
        return {"collectionName": self.name, "autoId": False, "fields": fields,
                "functions": self.functions, "enableDynamicField": self.dynamic,
                "indexes": [{"fieldName": k, "indexName": v.get("indexName", k),
                             "metricType": v.get("metricType", "")}
                            for k, v in self.indexes.items()],
                "load": self.state, "shardsNum": 1, "partitionsNum": 16 if self.partition_key else 1,
                "consistencyLevel": "Bounded", "properties": []}

    def check_row(self, row):
        if not isinstance(row, dict):
            bad("a row must be an object", 1804)
        for name, f in self.fields.items():
            t, p = f["type"], f["params"]
            if f["function_output"]:
                if name in row:
                    bad("field %s is a function output; do not send it" % name, 1804)
                continue
            if name not in row:
                bad("field %s is missing" % name, 1804)
            v = row[name]
            ok = {"Bool": lambda: isinstance(v, bool),
                  "Int8": lambda: isinstance(v, int) and not isinstance(v, bool),
                  "Int16": lambda: isinstance(v, int) and not isinstance(v, bool),
                  "Int32": lambda: isinstance(v, int) and not isinstance(v, bool),
                  "Int64": lambda: isinstance(v, int) and not isinstance(v, bool),
                  "Float": lambda: isinstance(v, (int, float)),
                  "Double": lambda: isinstance(v, (int, float)),
                  "VarChar": lambda: isinstance(v, str) and len(v.encode()) <= p["max_length"],
                  "JSON": lambda: True,
                  "Array": lambda: isinstance(v, list) and len(v) <= p["max_capacity"] and all(
                      isinstance(x, str) and len(x.encode()) <= p.get("max_length", 65535)
                      if f["element"] == "VarChar" else isinstance(x, int) for x in v),
                  "FloatVector": lambda: isinstance(v, list) and len(v) == p["dim"] and all(
                      isinstance(x, (int, float)) and math.isfinite(x) for x in v)}[t]()
            if not ok:
                bad("field %s: value does not fit %s %s" % (name, t, p), 1804)
        extra = set(row) - set(self.fields)
        if extra and not self.dynamic:
            bad("fields %s are not in the schema" % sorted(extra), 1804)

    def select(self, filt, require_key=True):
        """The rows the filter keeps (all when filt is None)."""
        if filt in (None, ""):
            if require_key and self.partition_key:
                bad("fake: a filter on partition key %s is required" % self.partition_key)
            return list(self.rows.values())
        if not isinstance(filt, str):
            bad("filter must be a string")
        e = Parser(filt).parse()
        # A lookup by primary key (`<pk> in [...]` at the top level) may go
        # without the key: it names its rows.
        if require_key and self.partition_key and not any(
                (c[0] == "cmp" and c[1] == "==" and c[2] == self.partition_key) or
                (c[0] == "in" and c[1] == self.pk)
                for c in conjuncts(e)):
            bad("fake: the filter must hold %s == <value> at its top level" % self.partition_key)
        return [r for r in self.rows.values() if evaluate(e, r, self.fields)]

    def ann(self, sub, leak, default_limit):
        """One search of sub (a search or sub-search request): [(score, row)], best first."""
        field = sub.get("annsField")
        if not field:
            vecs = [n for n, f in self.fields.items() if f["type"].endswith("Vector")]
            if len(vecs) != 1:
                bad("annsField is required when a collection has several vector fields")
            field = vecs[0]
        f = self.fields.get(field)
        if not f or not f["type"].endswith("Vector"):
            bad("annsField %r is not a vector field" % field, 1700)
        data = sub.get("data")
        if not isinstance(data, list) or len(data) != 1:
            bad("this fake takes exactly one query in data")
        limit = sub.get("limit", default_limit)
        if not isinstance(limit, int) or not 1 <= limit <= 16384:
            bad("limit must be 1..16384")
        metric = sub.get("metricType") or (sub.get("searchParams") or {}).get("metricType")
        index_metric = self.indexes.get(field, {}).get("metricType")
        if metric and index_metric and metric != index_metric:
            bad("metric type %s does not match the index's %s" % (metric, index_metric))
        rows = list(self.rows.values()) if leak else self.select(sub.get("filter"))
        q = data[0]
        scored = []
        if f["type"] == "FloatVector":
            if not (isinstance(q, list) and len(q) == f["params"]["dim"] and
                    all(isinstance(x, (int, float)) for x in q)):
                bad("query vector must have %d numbers" % f["params"]["dim"], 1801)
            qn = math.sqrt(sum(x * x for x in q)) or 1.0
            for r in rows:
                v = r[field]
                vn = math.sqrt(sum(x * x for x in v)) or 1.0
                scored.append((sum(a * b for a, b in zip(q, v)) / (qn * vn), r))
        else:
            if field not in self.bm25 or not isinstance(q, str):
                bad("a sparse search here takes query text on a BM25 output field", 1801)
            params = self.indexes.get(field, {}).get("params", {})
            k1, b = float(params.get("bm25_k1", 1.2)), float(params.get("bm25_b", 0.75))
            src = self.bm25[field]
            docs = [(terms(r[src]), r) for r in rows]
            # Milvus keeps BM25 statistics (row count, average length, document
            # frequencies) per collection (its segments' stats, summed), not per
            # filter: the rows a filter drops still count. So does the fake.
            every = [terms(r[src]) for r in self.rows.values()]
            n = len(every)
            avgdl = (sum(len(t) for t in every) / n) if n else 1.0
            qterms = set(terms(q))
            df = {t: sum(1 for d in every if t in d) for t in qterms}
            for d, r in docs:
                s = 0.0
                for t in qterms:
                    tf = d.count(t)
                    if tf:
                        idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                        s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / (avgdl or 1)))
                if s > 0:
                    scored.append((s, r))
        scored.sort(key=lambda x: (-x[0], x[1][self.pk]))
        return scored[:limit], (index_metric or metric or "")

    def output(self, row, fields, score=None):
        out = {}
        for name in fields or [self.pk]:
            if name == "*":
                out.update({k: v for k, v in row.items()})
            elif name not in self.fields:
                bad("output field %s not found" % name, 1700)
            elif not self.fields[name]["function_output"]:
                out[name] = row[name]
        out.setdefault(self.pk, row[self.pk])
        if score is not None:
            out["distance"] = score
        return out


def normalize(score, metric):
    if metric == "COSINE":
        return (1 + score) / 2
    if metric in ("IP", "BM25"):
        return 0.5 + math.atan(score) / math.pi
    return 1 - 2 * math.atan(score) / math.pi  # L2: smaller is better


# ---- request handling ---------------------------------------------------------


def collection(req, need_loaded=False):
    name = req.get("collectionName")
    if not isinstance(name, str) or not name:
        bad("collectionName is required", 1802)
    c = DBS.get(req.get("dbName") or "default", {}).get(name)
    if not c:
        bad("collection not found[collection=%s]" % name, 100)
    if need_loaded and c.state != "LoadStateLoaded":
        bad("collection not loaded[collection=%s]" % name, 101)
    return c


def op_create(req, leak):
    name = req.get("collectionName")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name):
        bad("invalid collection name %r" % name)
    db = DBS.setdefault(req.get("dbName") or "default", {})
    if name in db:
        bad("collection %s already exists" % name, 65535)
    db[name] = Collection(req)
    return {}


def op_has(req, leak):
    name = req.get("collectionName")
    if not isinstance(name, str):
        bad("collectionName is required", 1802)
    return {"has": name in DBS.get(req.get("dbName") or "default", {})}


def op_describe(req, leak):
    return collection(req).describe()


def op_load(req, leak):
    c = collection(req)
    if c.state != "LoadStateLoaded":
        c.state = "LoadStateLoading"  # loaded at the next get_load_state
    return {}


def op_release(req, leak):
    collection(req).state = "LoadStateNotLoad"
    return {}


def op_drop(req, leak):
    collection(req)
    del DBS[req.get("dbName") or "default"][req["collectionName"]]
    return {}


def op_load_state(req, leak):
    name = req.get("collectionName")
    c = DBS.get(req.get("dbName") or "default", {}).get(name)
    if not c:
        return {"loadState": "LoadStateNotExist"}
    state = c.state
    if c.state == "LoadStateLoading":
        c.state = "LoadStateLoaded"
    return {"loadState": state, "loadProgress": 100 if state == "LoadStateLoaded" else 50}


def op_upsert(req, leak, insert=False):
    c = collection(req)
    rows = req.get("data")
    if not isinstance(rows, list) or not rows:
        bad("data must be a non-empty list of rows", 1802)
    for r in rows:
        c.check_row(r)
        if insert and r[c.pk] in c.rows:
            bad("duplicate primary key %r" % r[c.pk], 1804)
    for r in rows:
        c.rows[r[c.pk]] = {k: v for k, v in r.items()}
    ids = [r[c.pk] for r in rows]
    return {("insertCount" if insert else "upsertCount"): len(rows),
            ("insertIds" if insert else "upsertIds"): ids}


def op_insert(req, leak):
    return op_upsert(req, leak, insert=True)


def op_delete(req, leak):
    c = collection(req)
    filt = req.get("filter")
    if not isinstance(filt, str) or not filt.strip():
        bad("filter is required", 1802)
    for r in c.select(filt):
        del c.rows[r[c.pk]]
    return {}


def op_query(req, leak):
    c = collection(req, need_loaded=True)
    fields = req.get("outputFields") or []
    # A count(*) without the partition key is allowed, as Milvus allows it: only
    # a number leaves the server, never a row.
    rows = c.select(req.get("filter"), require_key=fields != ["count(*)"])
    if fields == ["count(*)"]:
        return [{"count(*)": len(rows)}]
    limit = req.get("limit") or 100
    rows.sort(key=lambda r: r[c.pk])
    return [c.output(r, fields) for r in rows[req.get("offset") or 0:][:limit]]


def op_search(req, leak):
    c = collection(req, need_loaded=True)
    hits, _ = c.ann(req, leak, 100)
    return [c.output(r, req.get("outputFields"), s) for s, r in hits]


def op_hybrid(req, leak):
    c = collection(req, need_loaded=True)
    subs = req.get("search")
    if not isinstance(subs, list) or not subs:
        bad("search must be a non-empty list", 1802)
    rerank = req.get("rerank") or {}
    strategy, params = rerank.get("strategy"), rerank.get("params") or {}
    lists = [c.ann(s, leak, 100) for s in subs]
    fused = {}
    if strategy == "rrf":
        k = params.get("k", 60)
        if not isinstance(k, (int, float)) or not 0 < k < 16385:
            bad("rrf k must be in (0, 16384]")
        for hits, _ in lists:
            for rank, (_, r) in enumerate(hits, 1):
                fused[r[c.pk]] = fused.get(r[c.pk], 0.0) + 1.0 / (k + rank)
    elif strategy == "weighted":
        w = params.get("weights")
        if not isinstance(w, list) or len(w) != len(subs) or \
                not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in w):
            bad("weights must be one number in [0, 1] per search")
        norm = params.get("norm_score", False)
        for wi, (hits, metric) in zip(w, lists):
            for s, r in hits:
                fused[r[c.pk]] = fused.get(r[c.pk], 0.0) + wi * (normalize(s, metric) if norm else s)
    else:
        bad("unsupported rank type %r" % strategy, 65535)
    limit = req.get("limit", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 16384:
        bad("limit must be 1..16384")
    order = sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:limit]
    return [c.output(c.rows[pk], req.get("outputFields"), s) for pk, s in order]


ROUTES = {
    "collections/create": op_create, "collections/has": op_has,
    "collections/describe": op_describe, "collections/load": op_load,
    "collections/release": op_release, "collections/drop": op_drop,
    "collections/get_load_state": op_load_state,
    "entities/upsert": op_upsert, "entities/insert": op_insert,
    "entities/delete": op_delete, "entities/query": op_query,
    "entities/search": op_search, "entities/hybrid_search": op_hybrid,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("MILVUS_FAKE_VERBOSE"):
            sys.stderr.write("milvus_fake: " + fmt % args + "\n")

    def reply(self, status, obj=None, raw=None, declared=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)
        if declared is not None:
            self.wfile.flush()
            self.close_connection = True

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 64 << 20:
            raise MilvusError(1801, "request body too large")
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_fake/stats":
            with LOCK:
                return self.reply(200, STATS)
        self.reply(404, {"code": 404, "message": "not found"})

    def admin(self, action, req):
        global FAULTS
        with LOCK:
            if action == "fault":
                f = {"mode": req.get("mode"), "times": int(req.get("times", 1)),
                     "path": req.get("path"), "code": int(req.get("code", 0)),
                     "delay_ms": int(req.get("delay_ms", 0))}
                FAULTS.append(f)
            elif action == "reset":
                FAULTS = []
                STATS["requests"].clear()
                STATS["last"].clear()
                if req.get("data"):
                    DBS.clear()
            else:
                return self.reply(404, {"code": 404, "message": "no such switch"})
        self.reply(200, {"code": 0, "data": {}})

    def take_fault(self, path):
        with LOCK:
            for f in FAULTS:
                if f["times"] > 0 and f["path"] in (None, path):
                    f["times"] -= 1
                    mode = dict(f)
                    FAULTS[:] = [x for x in FAULTS if x["times"] > 0]
                    return mode
        return None

    def do_POST(self):
        try:
            raw = self.read_body()
        except (MilvusError, ValueError):
            return self.reply(200, {"code": 1801, "message": "can only accept json format request"})
        if self.path.startswith("/_fake/"):
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                req = {}
            return self.admin(self.path[len("/_fake/"):], req)
        prefix = "/v2/vectordb/"
        path = self.path[len(prefix):] if self.path.startswith(prefix) else None
        if path not in ROUTES:
            return self.reply(404, {"code": 404, "message": "path %s not found" % self.path})
        try:
            req = json.loads(raw)
        except ValueError:
            req = None
        with LOCK:
            STATS["requests"][path] = STATS["requests"].get(path, 0) + 1
            STATS["last"][path] = req
        if TOKEN is not None and self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self.reply(401, {"code": 1800, "message": "user hasn't authenticated"})
        fault = self.take_fault(path)
        leak = False
        if fault:
            mode = fault["mode"]
            if mode in ("http500", "http503", "http429"):
                return self.reply(int(mode[4:]), {"code": 65535, "message": "fake " + mode})
            if mode == "code":
                return self.reply(200, {"code": fault["code"], "message": "fake failure code %d" % fault["code"]})
            if mode == "malformed":
                return self.reply(200, raw=b'{"code": 0, "data": [{"chunk_id": ')
            if mode == "nocode":
                return self.reply(200, {"data": []})
            if mode == "truncated":
                return self.reply(200, raw=b'{"code": 0, "da', declared=200)
            if mode == "auth":
                return self.reply(401, {"code": 1800, "message": "user hasn't authenticated"})
            if mode == "slow":
                time.sleep(fault["delay_ms"] / 1000.0)
            leak = mode == "leak"
        if not isinstance(req, dict):
            return self.reply(200, {"code": 1801, "message": "can only accept json format request"})
        try:
            with LOCK:
                data = ROUTES[path](req, leak)
            self.reply(200, {"code": 0, "cost": 0, "data": data})
        except MilvusError as e:
            self.reply(200, {"code": e.code, "message": e.message})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.reply(200, {"code": 1100, "message": "invalid parameter: %s" % e})


def main():
    global TOKEN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token", default=os.environ.get("MILVUS_FAKE_TOKEN"))
    args = ap.parse_args()
    TOKEN = args.token or None
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, args.port_file)  # readers never see a half-written file
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
