#!/usr/bin/python3
"""
check_dashboards.py -- runs every Grafana panel query of grafana/dashboards/
against a real cdviz database, as Grafana would, as a member of cdviz_reader.

Grafana cannot run here, so this script does what Grafana does with a panel
query before it reaches PostgreSQL:

  1. the frontend interpolates template variables ($var, ${var}, ${var:fmt},
     [[var]]) with the PostgreSQL data source's rules: a multi-value or
     include-All variable becomes a list of quoted literals, a plain one is
     inserted as it is (single quotes doubled), "All" becomes every value, or
     the variable's custom allValue inserted raw; $__interval and friends too;
  2. the backend expands the macros ($__timeFilter(col), $__timeFrom(),
     $__timeTo(), $__timeGroup(col, '1d'[, fill]), $__timeGroupAlias, $__time,
     $__timeEpoch, $__unixEpoch*) exactly as grafana-postgresql-datasource
     does: the argument list ends at the first ")", arguments are split at
     commas, so a macro argument cannot hold parentheses;

with each variable at its dashboard default (the first value when it has
none) and the range "now-30d" to "now".  Variables are resolved in order by
running their own queries.

Checks: the provisioning files (data source uid cdviz-pg, PostgreSQL 15, no
TimescaleDB, environment variables for the connection), every dashboard JSON
(unique dashboard uids and titles, unique panel ids, every panel and target
on the provisioned data source, dashboard links, time-series queries that
return a "time" column), every variable resolves to at least one value, and
every panel query runs without error; a panel must return rows unless it is
marked "cdvizMayBeEmpty": "<why>" in its JSON.  Repeated panels run once per
value of their variable.

By default it creates its own database (DROP/CREATE DATABASE
cdviz_grafana_check), CREATE EXTENSION cdviz, loads scripts/demo_events.sql
(what `bash scripts/run.sh` loads), adds a few test re-runs so that the flaky
tests panel has something to find, and queries as a login role that is a
member of cdviz_reader (created when missing).  Connection: the PG* variables
(PGHOST, PGPORT, PGUSER = a superuser).

    /usr/bin/python3 test/grafana/check_dashboards.py [-v]
    # an existing database (no setup), queries under SET ROLE cdviz_reader,
    # each run 20 times, slowest panels by p95 listed (empty panels are only noted):
    PGDATABASE=bench /usr/bin/python3 test/grafana/check_dashboards.py --no-setup --repeat 20

Ends with "N passed, N failed" and exits non-zero when a check failed.
Standard library only: queries go through psql.
"""
import argparse
import csv
import datetime
import glob
import io
import json
import math
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DS_UID = "cdviz-pg"
DS_TYPES = ("postgres", "grafana-postgresql-datasource")
PSQL = os.environ.get("PSQL", "psql")
DEFAULT_DB = "cdviz_grafana_check"
DEFAULT_ROLE = "cdviz_grafana_check"
ALL = "$__all"

PASSED = 0
FAILED = 0
VERBOSE = False


def ok(cond, what, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        if VERBOSE:
            print(f"ok      {what}")
    else:
        FAILED += 1
        print(f"FAILED  {what}")
        if detail:
            for line in str(detail).rstrip().splitlines()[:40]:
                print(f"        {line}")
    return cond


# ------------------------------------------------------------------ psql ----

class QueryError(Exception):
    pass


class Db:
    """Runs SQL through psql: as the superuser of the PG* variables (admin),
    or as the reader (a login role, or SET ROLE cdviz_reader)."""

    def __init__(self, database, login_role=None, set_role=None):
        self.database = database
        self.login_role = login_role
        self.set_role = set_role

    def _env(self, reader):
        env = dict(os.environ)
        env["PGDATABASE"] = self.database
        opts = ["-c statement_timeout=300000"]
        if reader:
            if self.login_role:
                env["PGUSER"] = self.login_role
            if self.set_role:
                opts.append(f"-c role={self.set_role}")
            opts.append("-c jit=off")
        env["PGOPTIONS"] = " ".join(opts)
        return env

    def admin(self, sql, database=None):
        env = self._env(False)
        if database:
            env["PGDATABASE"] = database
        r = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise QueryError(r.stderr.strip() or f"psql exit {r.returncode}")
        return r.stdout

    def admin_file(self, path):
        r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                           env=self._env(False), capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise QueryError(r.stderr.strip() or f"psql exit {r.returncode}")
        return r.stdout

    def query(self, sql):
        """Runs one query as the reader: (column names, rows, milliseconds)."""
        r = subprocess.run([PSQL, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1",
                            "-c", "\\timing on", "-c", sql],
                           env=self._env(True), capture_output=True, text=True)
        if r.returncode != 0:
            raise QueryError(r.stderr.strip() or f"psql exit {r.returncode}")
        out = r.stdout
        ms = None
        m = re.search(r"\nTime: ([0-9.]+) ms[^\n]*\n?$", "\n" + out)
        if m:
            ms = float(m.group(1))
            out = out[:len(out) - len(m.group(0)) + 1] if out.endswith("\n") else out[:m.start()]
        rows = list(csv.reader(io.StringIO(out)))
        if not rows:
            return [], [], ms
        return rows[0], rows[1:], ms

    def timings(self, sql, runs):
        """Server times (ms) of runs executions of sql in one reader session,
        after one untimed warm-up: Grafana keeps its connections open, so a
        fresh session's catalog loading is not part of a panel's latency."""
        script = "\\timing on\n\\o /dev/null\n" + (sql.rstrip().rstrip(";") + ";\n") * (runs + 1)
        r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=script,
                           env=self._env(True), capture_output=True, text=True)
        if r.returncode != 0:
            raise QueryError(r.stderr.strip() or f"psql exit {r.returncode}")
        return [float(t) for t in re.findall(r"^Time: ([0-9.]+) ms", r.stdout, re.M)][1:]


# ------------------------------------------------------ Grafana's rules ----

def quote_literal(v):
    return "'" + str(v).replace("'", "''") + "'"


def parse_interval(s):
    """gtime.ParseInterval: 1d, 1w, 1M, 1y, or a Go duration (1h, 30m, 10s, 500ms)."""
    s = s.strip().strip("'\"")
    m = re.fullmatch(r"(\d+)([dwMy])", s)
    if m:
        n, u = int(m.group(1)), m.group(2)
        return n * {"d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}[u]
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s):
        if m.start() != pos:
            raise ValueError(f"invalid interval '{s}'")
        pos = m.end()
        total += float(m.group(1)) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if pos != len(s) or not s:
        raise ValueError(f"invalid interval '{s}'")
    return total


def round_interval(seconds):
    """Grafana's rangeutil.roundInterval (in seconds)."""
    ms = seconds * 1000
    steps = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
             (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
             (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000),
             (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000),
             (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
             (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000)]
    for limit, step in steps:
        if ms < limit:
            return step / 1000
    return 31536000


def fmt_interval(seconds):
    for unit, n in (("y", 31536000), ("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{int(seconds * 1000)}ms"


def go_float(x):
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def rfc3339(t):
    s = t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return s + "Z"


VAR_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")
MACRO_RE = re.compile(r"\$(\w+)\(([^\)]*)\)")


class Context:
    def __init__(self, t_from, t_to, panel_interval=None):
        self.t_from, self.t_to = t_from, t_to
        self.vars = {}  # name -> (variable json, selected values list or ALL, options)
        self.panel_interval = panel_interval

    def interval_seconds(self):
        rng = (self.t_to - self.t_from).total_seconds()
        iv = round_interval(rng / 1000)  # about 1000 data points, as a full-width panel asks
        if self.panel_interval:
            iv = max(iv, parse_interval(self.panel_interval))
        return iv

    def builtin(self, name):
        rng = (self.t_to - self.t_from).total_seconds()
        if name == "__from":
            return str(int(self.t_from.timestamp() * 1000))
        if name == "__to":
            return str(int(self.t_to.timestamp() * 1000))
        if name in ("__interval", "__rate_interval"):
            return fmt_interval(self.interval_seconds())
        if name == "__interval_ms":
            return str(int(self.interval_seconds() * 1000))
        if name == "__range_s":
            return str(int(rng))
        if name == "__range_ms":
            return str(int(rng * 1000))
        if name == "__range":
            return f"{int(rng)}s"
        return None

    def format_value(self, var, selected, options, fmt):
        """What the PostgreSQL data source puts in place of $var."""
        values = selected
        if selected == ALL:
            if var.get("allValue") not in (None, "") and fmt not in ("text", "queryparam"):
                return var["allValue"]  # a custom all value is inserted raw, unformatted
            values = options
        multi = isinstance(values, list) and (len(values) != 1 or var.get("multi"))
        vals = values if isinstance(values, list) else [values]
        if fmt in (None, "sqlstring_default"):
            if var.get("multi") or var.get("includeAll"):
                return ",".join(quote_literal(v) for v in vals)
            return ",".join(str(v).replace("'", "''") for v in vals)
        if fmt == "raw" or fmt == "text":
            return ",".join(str(v) for v in vals)
        if fmt == "csv":
            return ",".join(str(v) for v in vals)
        if fmt in ("sqlstring", "singlequote"):
            return ",".join(quote_literal(v) if fmt == "sqlstring" else "'" + str(v).replace("'", "\\'") + "'" for v in vals)
        if fmt == "doublequote":
            return ",".join('"' + str(v).replace('"', '\\"') + '"' for v in vals)
        if fmt == "pipe":
            return "|".join(str(v) for v in vals)
        if fmt == "percentencode":
            from urllib.parse import quote
            return quote(",".join(str(v) for v in vals), safe="")
        raise ValueError(f"unsupported variable format '{fmt}'")

    def interpolate(self, sql):
        def repl(m):
            name = m.group(1) or m.group(2) or m.group(4)
            fmt = m.group(3) or m.group(6)
            if name in self.vars:
                var, selected, options = self.vars[name]
                return self.format_value(var, selected, options, fmt)
            b = self.builtin(name)
            if b is not None:
                return b
            return m.group(0)  # unknown: left alone (macros, $1 ...), as Grafana does
        return VAR_RE.sub(repl, sql)

    def expand_macros(self, sql):
        errors = []

        def repl(m):
            name, params = m.group(1), m.group(2)
            if not name.startswith("__"):
                return m.group(0)
            args = [a.strip() for a in params.replace("\n", "").split(",")] if params.strip() else [""]
            for a in args:
                if a.startswith('"') and a.endswith('"') and len(a) > 1:
                    errors.append(f"${name}: argument {a} would lose its quotes in Grafana's CSV argument parser")
            try:
                return self.macro(name, args, m.end(), sql)
            except (ValueError, IndexError) as e:
                errors.append(f"${name}({params}): {e}")
                return "macro_error()"
        out = MACRO_RE.sub(repl, sql)
        if errors:
            raise ValueError("; ".join(errors))
        return out

    def macro(self, name, args, end, sql):
        f, t = rfc3339(self.t_from), rfc3339(self.t_to)
        if name == "__timeGroup" and end < len(sql) and sql[end] == ",":
            name = "__timeGroupAlias"  # pre-5.3 compatibility, as Grafana does
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            if not args[0]:
                raise ValueError("missing time column argument")
            return f"{args[0]} BETWEEN '{f}' AND '{t}'"
        if name == "__timeFrom":
            return f"'{f}'"
        if name == "__timeTo":
            return f"'{t}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2:
                raise ValueError("macro needs time column and interval")
            iv = parse_interval(args[1])
            if len(args) == 3 and not re.fullmatch(r"NULL|previous|-?\d+(\.\d+)?", args[2]):
                raise ValueError(f"fill value '{args[2]}' is not a number, NULL or previous")
            s = go_float(iv)
            res = f"floor(extract(epoch from {args[0]})/{s})*{s}"
            return res + ' AS "time"' if name == "__timeGroupAlias" else res
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(self.t_from.timestamp())} AND {args[0]} <= {int(self.t_to.timestamp())}"
        if name == "__unixEpochFrom":
            return str(int(self.t_from.timestamp()))
        if name == "__unixEpochTo":
            return str(int(self.t_to.timestamp()))
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            s = go_float(parse_interval(args[1]))
            res = f"floor(({args[0]})/{s})*{s}"
            return res + ' AS "time"' if name.endswith("Alias") else res
        raise ValueError(f"undefined macro: ${name}")

    def render(self, sql):
        return self.expand_macros(self.interpolate(sql))


# -------------------------------------------------------------- checks ----

def check_provisioning():
    ds = os.path.join(ROOT, "grafana", "provisioning", "datasources", "cdviz.yaml")
    dp = os.path.join(ROOT, "grafana", "provisioning", "dashboards", "cdviz.yaml")
    if not ok(os.path.isfile(ds), "provisioning: datasources/cdviz.yaml exists"):
        return
    text = open(ds).read()
    ok(re.search(rf"^\s*uid:\s*['\"]?{DS_UID}['\"]?\s*$", text, re.M), f"datasource: uid {DS_UID}")
    ok(re.search(r"^\s*type:\s*['\"]?(postgres|grafana-postgresql-datasource)['\"]?\s*$", text, re.M), "datasource: PostgreSQL type")
    ok(re.search(r"^\s*postgresVersion:\s*1500\s*$", text, re.M), "datasource: postgresVersion 1500")
    ok(re.search(r"^\s*timescaledb:\s*false\s*$", text, re.M), "datasource: timescaledb false")
    for key in ("url", "user", "database", "password"):
        ok(re.search(rf"^\s*{key}:.*\$\{{?CDVIZ_PG_\w+", text, re.M), f"datasource: {key} from an environment variable")
    if ok(os.path.isfile(dp), "provisioning: dashboards/cdviz.yaml exists"):
        t2 = open(dp).read()
        ok("/var/lib/grafana/dashboards" in t2, "dashboard provider reads /var/lib/grafana/dashboards")


def load_dashboards(directory):
    dashboards = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        try:
            with open(path) as f:
                dashboards.append((path, json.load(f)))
            ok(True, f"{os.path.basename(path)}: valid JSON")
        except ValueError as e:
            ok(False, f"{os.path.basename(path)}: valid JSON", e)
    return dashboards


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:  # collapsed rows
            yield q


def check_static(dashboards):
    uids, titles = {}, {}
    for path, d in dashboards:
        name = os.path.basename(path)
        uid = d.get("uid")
        ok(uid and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"{name}: stable uid '{uid}'")
        ok(uid not in uids, f"{name}: uid '{uid}' unique", f"also in {uids.get(uid)}")
        uids[uid] = name
        ok(d.get("title") not in titles, f"{name}: title unique")
        titles[d.get("title")] = name
        ok(d.get("schemaVersion", 0) >= 36, f"{name}: Grafana 10+ JSON model (schemaVersion {d.get('schemaVersion')})")
        ok(d.get("id") is None, f"{name}: no database id (provisioned dashboards get theirs)")
        ok(any(l.get("type") == "dashboards" and "cdviz" in (l.get("tags") or []) for l in d.get("links", [])),
           f"{name}: links to the other cdviz dashboards")
        ids = [p.get("id") for p in all_panels(d)]
        ok(len(ids) == len(set(ids)) and None not in ids, f"{name}: unique panel ids")
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                ok((v.get("datasource") or {}).get("uid") == DS_UID, f"{name}: variable {v.get('name')} on {DS_UID}")
        for p in all_panels(d):
            if p.get("type") in ("row", "text"):
                continue
            label = f"{name}: panel {p.get('id')} '{p.get('title')}'"
            pds = p.get("datasource") or {}
            ok(pds.get("uid") == DS_UID and pds.get("type") in DS_TYPES, f"{label}: data source {DS_UID}", pds)
            targets = p.get("targets") or []
            ok(targets, f"{label}: has a query")
            for t in targets:
                tds = t.get("datasource") or pds
                ok(tds.get("uid") == DS_UID, f"{label} {t.get('refId')}: target data source {DS_UID}", tds)
                ok(t.get("rawQuery") and t.get("rawSql"), f"{label} {t.get('refId')}: raw SQL")
    # links to dashboards by uid must point to one of ours
    known = set(uids)
    for path, d in dashboards:
        for m in re.finditer(r"/d/([A-Za-z0-9_-]+)", json.dumps(d)):
            ok(m.group(1) in known, f"{os.path.basename(path)}: link to /d/{m.group(1)} resolves")
    return uids


def resolve_variables(db, d, name, ctx, timings):
    ok_all = True
    for v in d.get("templating", {}).get("list", []):
        vname = v.get("name")
        if v.get("type") == "query":
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("rawSql") or q.get("query")
            try:
                sql = ctx.render(q)
                cols, rows, ms = db.query(sql)
            except (QueryError, ValueError) as e:
                ok(False, f"{name}: variable ${vname} resolves", f"{e}\n--- query ---\n{q}")
                ok_all = False
                ctx.vars[vname] = (v, [], [])
                continue
            timings.append(([ms or 0.0], f"{name} variable ${vname}", sql))
            vi = cols.index("__value") if "__value" in cols else 0
            options = []
            for r in rows:
                if r and r[vi] not in options:
                    options.append(r[vi])
            if v.get("regex"):
                rx = re.compile(v["regex"].strip("/"))
                options = [o for o in options if rx.search(o)]
            ok(len(options) > 0, f"{name}: variable ${vname} resolves ({len(options)} values)", "no value")
            cur = (v.get("current") or {}).get("value")
            if cur in (ALL, [ALL]) and v.get("includeAll"):
                selected = ALL
            elif cur not in (None, "", []):
                want = cur if isinstance(cur, list) else [cur]
                found = [w for w in want if w in options]
                selected = found if found else options[:1]
                if not v.get("multi"):
                    selected = selected[0] if selected else ""
            else:
                selected = [options[0]] if (options and v.get("multi")) else (options[0] if options else "")
            ctx.vars[vname] = (v, selected, options)
        elif v.get("type") in ("custom", "constant", "textbox", "interval"):
            cur = (v.get("current") or {}).get("value", v.get("query", ""))
            opts = [o.get("value") for o in v.get("options", [])] or [cur]
            ctx.vars[vname] = (v, cur, opts)
    return ok_all


def panel_runs(p, ctx):
    """The (label suffix, context) pairs a panel is run with: one per repeat value."""
    rep = p.get("repeat")
    if not rep or rep not in ctx.vars:
        return [("", ctx)]
    var, selected, options = ctx.vars[rep]
    values = options if selected == ALL else (selected if isinstance(selected, list) else [selected])
    runs = []
    for val in values:
        c = Context(ctx.t_from, ctx.t_to, p.get("interval"))
        c.vars = dict(ctx.vars)
        c.vars[rep] = (var, [val] if var.get("multi") else val, options)
        runs.append((f" [{rep}={val}]", c))
    return runs


def check_panels(db, d, name, ctx, timings, repeat, dump_dir, reruns=False, expect_rows=True):
    for p in all_panels(d):
        if p.get("type") in ("row", "text") or not p.get("targets"):
            continue
        base = f"{name}: panel {p.get('id')} '{p.get('title')}'"
        may_be_empty = p.get("cdvizMayBeEmpty")
        if reruns and d.get("uid") == "cdviz-tests" and p.get("title", "").startswith("Flaky"):
            may_be_empty = None  # the re-runs added by the setup must be found
        for suffix, c in panel_runs(p, ctx):
            c.panel_interval = p.get("interval")
            for t in p["targets"]:
                label = base + suffix + (f" {t.get('refId')}" if len(p["targets"]) > 1 else "")
                try:
                    sql = c.render(t["rawSql"])
                except ValueError as e:
                    ok(False, f"{label}: macros expand", e)
                    continue
                if dump_dir:
                    fn = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}-{p.get('id')}{suffix}-{t.get('refId')}")[:120]
                    with open(os.path.join(dump_dir, fn + ".sql"), "w") as f:
                        f.write(sql + ";\n")
                try:
                    cols, rows, ms = db.query(sql)
                    times = db.timings(sql, repeat) if repeat > 1 else [ms or 0.0]
                except QueryError as e:
                    ok(False, f"{label}: query runs", f"{e}\n--- expanded query ---\n{sql}")
                    continue
                timings.append((times, label, sql))
                ok(True, f"{label}: query runs ({len(rows)} rows, {min(times):.1f} ms)")
                fmt = t.get("format", "table")
                if fmt == "time_series" or p.get("type") in ("timeseries", "state-timeline"):
                    ok("time" in cols, f"{label}: returns a \"time\" column", f"columns: {cols}")
                if fmt == "time_series" and "metric" in cols:
                    ok("value" in cols or len(cols) >= 3, f"{label}: long time series has metric and value", cols)
                if may_be_empty or not expect_rows:
                    if not rows:
                        why = may_be_empty or "not checked on a database the setup did not fill"
                        print(f"note    {label}: no rows (allowed: {why})")
                else:
                    ok(len(rows) > 0, f"{label}: returns rows", f"no rows\n--- expanded query ---\n{sql}")


# --------------------------------------------------------------- setup ----

# A few re-runs of passing test cases with the other outcome, in the same
# chain (same change, build and artifact): what a flaky test looks like.
# The demo data runs each test once per delivery, so without them the flaky
# tests panel would have nothing to find.
RERUNS_SQL = r"""
WITH picked AS (
	SELECT l.subject_id FROM cdviz.cdevents_lake AS l
	WHERE l.subject = 'testcaserun' AND l.predicate = 'finished' AND l.spec_version = '0.5.1'
	  AND l.chain_id IS NOT NULL AND l.payload #>> '{subject,content,outcome}' = 'success'
	  AND l."timestamp" BETWEEN now() - interval '10 days' AND now() - interval '1 day'
	ORDER BY l."timestamp" DESC LIMIT 3
), src AS (
	SELECT l.* FROM cdviz.cdevents_lake AS l JOIN picked USING (subject_id)
	WHERE l.subject = 'testcaserun' AND l.spec_version = '0.5.1'
)
SELECT sum(b.stored) FROM (
	SELECT (cdviz.ingest_batch(jsonb_agg(
		jsonb_set(jsonb_set(jsonb_set(jsonb_set(s.payload,
			'{context,id}', to_jsonb(s.context_id || '-rerun')),
			'{context,timestamp}', to_jsonb(to_char((s."timestamp" + interval '10 minutes') AT TIME ZONE 'UTC',
												   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))),
			'{subject,id}', to_jsonb(s.subject_id || '-rerun')),
			'{subject,content}', (s.payload #> '{subject,content}')
				|| CASE WHEN s.predicate = 'finished' THEN '{"outcome": "failure"}'::jsonb ELSE '{}'::jsonb END)
		ORDER BY s."timestamp"), 'grafana-check')).*
	FROM src AS s) AS b
"""


def setup(db, role, reruns):
    """Creates and fills the database; True when the test re-runs were added."""
    print(f"==> creating database {db.database} with the demo events (scripts/demo_events.sql)")
    db.admin(f'DROP DATABASE IF EXISTS "{db.database}" WITH (FORCE)', database="postgres")
    db.admin(f'CREATE DATABASE "{db.database}"', database="postgres")
    db.admin("CREATE EXTENSION cdviz")
    t0 = time.time()
    db.admin_file(os.path.join(ROOT, "scripts", "demo_events.sql"))
    n = db.admin("SELECT count(*) FROM cdviz.cdevents_lake").strip()
    print(f"==> {n} events loaded in {time.time() - t0:.1f} s")
    if reruns:
        stored = db.admin(RERUNS_SQL).strip()
        reruns = ok(stored not in ("", "0"), f"setup: {stored} test re-run events added (flaky tests)")
    db.admin("ANALYZE")
    db.admin(f"""DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
			CREATE ROLE "{role}" LOGIN;
		END IF;
	END $$;
	GRANT cdviz_reader TO "{role}";
	ALTER ROLE "{role}" SET jit = off;""")
    # the role must be a plain reader: not a superuser, no other membership
    bad = db.admin(f"""SELECT r.rolsuper OR EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
	                WHERE m.member = r.oid AND g.rolname <> 'cdviz_reader')
	                FROM pg_roles r WHERE r.rolname = '{role}'""").strip()
    ok(bad == "f", f"setup: {role} is only a member of cdviz_reader")
    return reruns


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboards", default=os.path.join(ROOT, "grafana", "dashboards"))
    ap.add_argument("--database", default=None, help=f"database (default: {DEFAULT_DB}, or PGDATABASE with --no-setup)")
    ap.add_argument("--role", default=DEFAULT_ROLE, help="login role, member of cdviz_reader, created by the setup")
    ap.add_argument("--no-setup", action="store_true",
                    help="use the existing database as it is, query under SET ROLE cdviz_reader")
    ap.add_argument("--no-reruns", action="store_true", help="load the demo data only")
    ap.add_argument("--keep", action="store_true", help="keep the database created by the setup")
    ap.add_argument("--repeat", type=int, default=1, help="also time each panel query N times in one session after a warm-up: best, p50, p95")
    ap.add_argument("--slowest", type=int, default=10, help="list the N slowest panel queries")
    ap.add_argument("--dump", metavar="DIR", help="write every expanded query to DIR")
    ap.add_argument("--days", type=int, default=30, help="time range: now-Nd to now")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose

    check_provisioning()
    dashboards = load_dashboards(args.dashboards)
    ok(len(dashboards) > 0, f"dashboards found in {args.dashboards}")
    check_static(dashboards)

    reruns = False
    if args.no_setup:
        db = Db(args.database or os.environ.get("PGDATABASE", "cdviz"), set_role="cdviz_reader")
    else:
        db = Db(args.database or DEFAULT_DB, login_role=args.role)
        try:
            reruns = setup(db, args.role, not args.no_reruns)
        except QueryError as e:
            ok(False, "setup: database with the demo events", e)
            print(f"{PASSED} passed, {FAILED} failed")
            return 1
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)

    # rounded up: data stored in the last second before now is in the range
    t_to = (datetime.datetime.now(datetime.timezone.utc)
            + datetime.timedelta(seconds=1)).replace(microsecond=0)
    t_from = t_to - datetime.timedelta(days=args.days)
    timings = []
    for path, d in dashboards:
        name = os.path.basename(path)
        ctx = Context(t_from, t_to)
        resolve_variables(db, d, name, ctx, timings)
        check_panels(db, d, name, ctx, timings, args.repeat, args.dump, reruns, not args.no_setup)

    if timings and args.slowest:
        # nearest rank, as bench/read_api.sh computes its p50 and p95
        def rank(times, q):
            ordered = sorted(times)
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        print(f"slowest queries by p95 (server time, ms; " + (f"{args.repeat} warm runs of each panel" if args.repeat > 1 else "one run") + ", variables once):")
        print(f"  {'best':>7} {'p50':>7} {'p95':>7}  query")
        for times, label, _ in sorted(timings, key=lambda x: -rank(x[0], 0.95))[:args.slowest]:
            print(f"  {min(times):7.1f} {rank(times, 0.5):7.1f} {rank(times, 0.95):7.1f}  {label}")
    if not args.no_setup and not args.keep and FAILED == 0:
        try:
            db.admin(f'DROP DATABASE IF EXISTS "{db.database}" WITH (FORCE)', database="postgres")
        except QueryError as e:
            print(f"warning: could not drop {db.database}: {e}")
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
