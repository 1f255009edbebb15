#!/usr/bin/python3
"""
test_schema_agreement.py
    Differential test: the C core's strict verdict against the official
    CDEvents JSON schemas evaluated by python-jsonschema (Draft 2020-12,
    formats asserted), over thousands of mutated conformance events.

Run from anywhere with Debian's interpreter (python3-jsonschema,
python3-rfc3987):

    /usr/bin/python3 test/oracle/test_schema_agreement.py [--pairs N] [--seed S] [-v]

It builds nothing: `make unit` (or `make test/unit/validate_cli`) must have
built test/unit/validate_cli.

For every conformance event (0.4.1, 0.5.1, the custom events) and every
0.3.0 example it generates mutations -- every field removed at every depth,
every field given every other JSON type, empty strings, edge and invalid
date-times and URIs, unknown extra fields at every object level, optional
fields added, other enum values, links and customData variants, then random
pairs of those -- asks the schema of the original event's type and release
for a verdict, runs validate_cli strict over all of them in one process,
and asserts that the verdicts agree.  For the targeted classes (a required
field removed, a wrong JSON type, an empty id, an invalid date-time) it also
asserts that the C problems name the mutated path.  For accepted events it
checks the extracted subject, predicate, version and timestamp.

The value of context.type is never mutated (it selects the schema);
removing it or giving it another JSON type is.

Deliberate difference, excluded from the comparison (see
ends_with_newline_where_ecma_differs):
  * a value ending in "\\n" where the schema has format uri / uri-reference
    or a pattern: rfc3987 and jsonschema's "pattern" use Python `re`, whose
    `$` also matches before a trailing newline; JSON Schema patterns are
    ECMA-262 regular expressions, where `$` does not, and RFC 3986 has no
    newline in a URI.  The C core rejects such values.

A custom (dev.cdeventsx) event that loses its version field is judged by
the custom schema it comes closest to (src/core/event.c), so removing
context.version from the 0.4.1 custom event names context.version.
"""
import argparse
import copy
import glob
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from urllib.parse import urljoin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "test", "fixtures", "cdevents-spec")
CLI = os.environ.get("CDVIZ_VALIDATE_CLI", os.path.join(ROOT, "test", "unit", "validate_cli"))

try:
    import jsonschema
    from jsonschema import Draft202012Validator, FormatChecker, RefResolver
except ImportError:
    sys.exit("test_schema_agreement: python3-jsonschema (>= 4, Draft 2020-12) is "
             "needed; run with Debian's /usr/bin/python3")
try:
    import rfc3987  # noqa: F401  (jsonschema's uri checkers use it)
except ImportError:
    sys.exit("test_schema_agreement: python3-rfc3987 is needed for the uri formats")


# ---------------------------------------------------------------------
# The oracle: format checker
# ---------------------------------------------------------------------

# RFC 3339 section 5.6, ASCII digits only ([0-9], not \d which is Unicode
# aware), anchored with \Z: `$` would accept a trailing newline.
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z")


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_datetime(s):
    """Microseconds since the epoch for an RFC 3339 date-time, else None.

    Seconds may be 60 (a leap second; RFC 3339 allows it in the grammar,
    the calendar check of which minute may carry one is not made, as by
    the C core); it counts as the first second of the next minute.
    Fraction digits past the sixth are truncated."""
    if not isinstance(s, str):
        return None
    m = _DATETIME_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    if not (1 <= mo <= 12 and 1 <= d and h <= 23 and mi <= 59 and sec <= 60):
        return None
    mdays = [31, 29 if _leap(y) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if d > mdays[mo - 1]:
        return None
    off = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        off = (oh * 3600 + om * 60) * (1 if m.group(9) == "+" else -1)
    us = int((frac + "000000")[:6])
    return ((_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off)
            * 1000000 + us)


FORMAT_CHECKER = FormatChecker(formats=())
for _name in ("uri", "uri-reference"):
    if _name not in Draft202012Validator.FORMAT_CHECKER.checkers:
        sys.exit("test_schema_agreement: jsonschema has no %s checker "
                 "(python3-rfc3987 missing?)" % _name)
    FORMAT_CHECKER.checkers[_name] = Draft202012Validator.FORMAT_CHECKER.checkers[_name]


@FORMAT_CHECKER.checks("date-time")
def _is_datetime(instance):
    if not isinstance(instance, str):
        return True
    return parse_datetime(instance) is not None


# ---------------------------------------------------------------------
# Schemas and base events
# ---------------------------------------------------------------------

RELEASES = ("0.3.0", "0.4.1", "0.5.1")
STORE = {}                      # $id -> schema document
EVENT_SCHEMAS = {}              # (release, type) -> schema; type None = custom


def load_schemas():
    for rel in RELEASES:
        d = os.path.join(SPEC, "v" + rel)
        files = (sorted(glob.glob(os.path.join(d, "schemas", "*.json"))) +
                 sorted(glob.glob(os.path.join(d, "schemas", "links", "*.json"))) +
                 sorted(glob.glob(os.path.join(d, "custom", "schema.json"))))
        for f in files:
            with open(f, encoding="utf-8") as fh:
                doc = json.load(fh)
            STORE[doc["$id"]] = doc
            try:
                t = doc["properties"]["context"]["properties"]["type"]
            except KeyError:
                continue            # a links schema
            if "enum" in t:
                EVENT_SCHEMAS[(rel, t["enum"][0])] = doc
            else:
                EVENT_SCHEMAS[(rel, None)] = doc


def base_events():
    out = []
    for rel in RELEASES:
        d = os.path.join(SPEC, "v" + rel)
        files = (sorted(glob.glob(os.path.join(d, "conformance", "*.json"))) +
                 sorted(glob.glob(os.path.join(d, "examples", "*.json"))) +
                 sorted(glob.glob(os.path.join(d, "custom", "conformance.json"))))
        for f in files:
            with open(f, encoding="utf-8") as fh:
                ev = json.load(fh)
            out.append((rel, os.path.relpath(f, SPEC), ev))
    return out


_validators = {}


def validator_for(schema):
    v = _validators.get(id(schema))
    if v is None:
        v = Draft202012Validator(schema, format_checker=FORMAT_CHECKER,
                                 resolver=RefResolver.from_schema(schema, store=STORE))
        _validators[id(schema)] = v
    return v


# ---------------------------------------------------------------------
# Walking a schema alongside an instance path (for classification only;
# verdicts come from jsonschema)
# ---------------------------------------------------------------------

def _expand(s, base):
    """The schema and everything it applies in place: $ref, anyOf, oneOf."""
    if not isinstance(s, dict):
        return
    if "$id" in s:
        base = urljoin(base, s["$id"])
    yield s, base
    if "$ref" in s:
        target = urljoin(base, s["$ref"])
        yield from _expand(STORE[target], target)
    for k in ("anyOf", "oneOf", "allOf"):
        for sub in s.get(k, ()):
            yield from _expand(sub, base)


def schemas_at(schema, path):
    cur = list(_expand(schema, schema.get("$id", "")))
    for key in path:
        nxt = []
        for s, b in cur:
            if isinstance(key, int):
                if isinstance(s.get("items"), dict):
                    nxt.extend(_expand(s["items"], b))
            elif key in s.get("properties", {}):
                nxt.extend(_expand(s["properties"][key], b))
            elif isinstance(s.get("additionalProperties"), dict):
                nxt.extend(_expand(s["additionalProperties"], b))
        cur = nxt
    return [s for s, _ in cur]


def is_required(schema, path):
    if not path or isinstance(path[-1], int):
        return False
    return any(path[-1] in s.get("required", ()) for s in schemas_at(schema, path[:-1]))


def formats_at(schema, path):
    return {s["format"] for s in schemas_at(schema, path) if "format" in s}


def has_pattern_at(schema, path):
    return any("pattern" in s for s in schemas_at(schema, path))


def enums_at(schema, path):
    out = []
    for s in schemas_at(schema, path):
        out.extend(s.get("enum", ()))
    return out


def known_props_at(schema, path):
    props = {}
    for s in schemas_at(schema, path):
        for k, sub in s.get("properties", {}).items():
            props.setdefault(k, sub)
    return props


def sample_value(sub, base=""):
    """A plausible valid value for a property schema (best effort)."""
    for s, b in _expand(sub, base):
        if "enum" in s:
            return s["enum"][0]
    ss = [s for s, _ in _expand(sub, base)]
    types = [s.get("type") for s in ss if "type" in s]
    fmts = [s.get("format") for s in ss if "format" in s]
    if "object" in types:
        obj = {}
        for s in ss:
            for r in s.get("required", ()):
                if r in s.get("properties", {}):
                    obj[r] = sample_value(s["properties"][r])
        return obj
    if "array" in types:
        return []
    if "date-time" in fmts:
        return "2024-02-29T23:59:59.123456+01:00"
    if "uri" in fmts:
        return "https://example.org/x?y=1#z"
    if "uri-reference" in fmts:
        return "/a/b/c"
    if any("oneOf" in s for s in ss):
        return {"k": "v"}
    return "x"


# ---------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------

def path_str(path):
    """The path as the C core writes it: context.links[0].from, $ for root."""
    out = ""
    for k in path:
        if isinstance(k, int):
            out += "[%d]" % k
        else:
            out += ("." if out else "") + k
    return out or "$"


def walk(v, path=()):
    yield path, v
    if isinstance(v, dict):
        for k, c in v.items():
            yield from walk(c, path + (k,))
    elif isinstance(v, list):
        for i, c in enumerate(v):
            yield from walk(c, path + (i,))


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


OTHER_TYPES = [42, -7.5, 0, True, False, None, "wrong", "", [], ["x"], [1, 2], {}, {"k": "v"},
               12345678901234567890, -0.0, 1e308]

# Edge and invalid RFC 3339 date-times (the oracle decides which is which).
DATETIMES = [
    "2023-03-20T14:27:05Z", "2023-03-20t14:27:05z", "2023-03-20T14:27:05.1Z",
    "2023-03-20T14:27:05.123456789Z", "2023-03-20T14:27:05+00:00",
    "2023-03-20T14:27:05-00:00", "2023-03-20T14:27:05+23:59", "2023-03-20T14:27:05+24:00",
    "2023-03-20T14:27:05+05:60", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
    "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
    "2023-04-31T00:00:00Z", "2023-12-31T23:59:60Z", "2023-12-31T23:59:61Z",
    "2023-12-31T24:00:00Z", "2023-12-31T23:60:00Z", "2023-13-01T00:00:00Z",
    "2023-00-10T00:00:00Z", "2023-01-00T00:00:00Z", "2023-01-32T00:00:00Z",
    "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.5Z",
    "2023-03-20", "14:27:05Z", "2023-03-20T14:27:05", "2023-03-20 14:27:05Z",
    "2023-03-20T14:27Z", "2023-03-20T14:27:05.Z", "2023-03-20T14:27:05,5Z",
    "2023-3-20T14:27:05Z", "23-03-20T14:27:05Z", "+2023-03-20T14:27:05Z",
    "2023-03-20T14:27:05+0100", "2023-03-20T14:27:05+01", "2023-03-20T14:27:05UTC",
    "2023-03-20T14:27:05Z ", " 2023-03-20T14:27:05Z", "2023-03-20T14:27:05Z\n",
    "2023-03-20T14:27:05ZZ", "2023-03-20T14:27:05.123+02:00x", "2023-03-20T14:27:05.-1Z",
    "２０２３-03-20T14:27:05Z", "2023-03-20T14:27:0５Z", "2023-03-20T1a:27:05Z",
    "", "now", "2023-03-20T14:27:05Z\u0000",
]

# Edge and invalid URIs / URI references.
URIS = [
    "https://example.org/a/b?c=d#e", "http://user:pw@host:8080/p", "urn:isbn:0451450523",
    "mailto:a@b.c", "pkg:oci/myapp@sha256%3A0b31", "a:b", "a+b.c-d:x", "1a:b",
    "/event/source/123", "event/source", "./a:b", "a:b/c", "//host/path", "//host:/p",
    "//host:80a/p", "?q", "#f", "#f#g", "a#f?q", "?q#f", "", " ", "a b", "http://a b/",
    "http://[::1]/", "http://[::1]:8080/x", "http://[2001:db8::ff00:42:8329]/",
    "http://[2001:db8:0:0:0:0:2:1]", "http://[::ffff:192.0.2.1]/", "http://[::ffff:192.0.2.256]/",
    "http://[1::2::3]/", "http://[12345::]/", "http://[::1%25eth0]/", "http://[v1.fe]/",
    "http://[vF.a:b!$]/", "http://[v.x]/", "http://[v1.]/", "http://[::1", "http://::1]/",
    "http://[]/", "http://[g::1]/", "http://[::1]x/", "//[::1]/a", "http://h/%41%7e",
    "http://h/%4", "http://h/%zz", "http://h/a%", "%41/b", "http://é.example/", "http://h/é",
    "http://h/\u0000", "http:", "http:/", "http://", "http:///a", "http://h:/", "http://h:123456/",
    "http://u@h@i/", "http://h/a?b?c", "http://h/a#b#c", "http://h/[a]", "http://h/a{b}",
    "http://h/a|b", "http://h/a\\b", "http://h/a^b", "http://h/a`b", "http://h/<a>", "\"q\"",
    "-a:b", "a_b:c", "A:b", "http://h/a\nb", "http://h\n", "/a\n", "https://x.example/a\n",
    "//h//x", "///x", "////x", "http://256.256.256.256/", "http://h/!$&'()*+,;=:@",
    "file:///etc/passwd", "data:text/plain,hi", "javascript:alert(1)", "tel:+1-816-555-1212",
]

# Strings for fields with no format.
STRINGS = ["x", " ", "é", "\U0001F600", "a\nb", "trailing\n", "x" * 1000, "\u2028",
           "\\", "\"", "0"]

# Strings for fields with a pattern (the 0.4.1 custom subject.type).
PATTERN_STRINGS = ["a-b", "A1-b", "mytool-resource", "-b", "a-", "a-b-c", "a_b-c", "ab-c1",
                   "é-b", "a-b\r", "a-b\n", "\na-b", "a-b ", "a--b", "1-Z"]

# Unusual names for unknown fields (case and white space matter).
EXTRA_NAMES = ["", " ", "ID", "Id", "id ", "a.b", "ünï", "$ref", "__proto__"]

# Fragments that random URIs and date-times are made of.
URI_TOKENS = ["http", "a", "A9", "://", ":", "/", "//", "?", "#", "[", "]", "::", "1", "0",
              "v1.", "v.", "%", "%4", "%41", "%zz", "@", ".", "..", "-", "+", "ff", "1.2.3.4",
              "255.0.0.256", " ", "é", "!", "*", "~", "_", "=", "&", "'", "(", ")", ";", ",",
              "$", "[::1]", "[v7.x]", "[1:2:3:4:5:6:7:8]", "[::ffff:1.2.3.4]", "<", "\\", "|",
              "^", "`", "{", "}", '"', "8080", "ffff:", "g"]
DATETIME_TOKENS = ["2023", "-", "03", "20", "T", "t", "14", ":", "27", "05", ".", "315384",
                   "9999999", "Z", "z", "+", "02", "00", "60", "29", "31", "13", "24", " ",
                   "2024-02-29", "2023-02-29", "T23:59:60", "T00:00:00", "+23:59", "-00:00",
                   "0", "1", "x", "2023-03-20T14:27:05"]

EXTRA_NAME = "xCdvizExtra"


class Mutation:
    __slots__ = ("cls", "ops", "target", "doc", "text")

    def __init__(self, cls, ops, target=None):
        self.cls = cls              # class name for the counts
        self.ops = ops              # [(op, path, value)]
        self.target = target        # path the C problems must name, if any


def apply_ops(doc, ops):
    """A mutated deep copy, or None when an op does not apply."""
    doc = copy.deepcopy(doc)
    for op, path, value in ops:
        if not path:
            if op != "set":
                return None
            doc = copy.deepcopy(value)
            continue
        parent = doc
        for k in path[:-1]:
            if isinstance(k, int):
                if not isinstance(parent, list) or k >= len(parent):
                    return None
            elif not isinstance(parent, dict) or k not in parent:
                return None
            parent = parent[k]
        k = path[-1]
        if isinstance(k, int):
            if not isinstance(parent, list) or k >= len(parent):
                return None
        elif not isinstance(parent, dict):
            return None
        if op == "del":
            if isinstance(k, int) or k not in parent:
                return None
            del parent[k]
        elif op == "set":
            if not isinstance(k, int) and k not in parent:
                return None
            parent[k] = copy.deepcopy(value)
        elif op == "add":
            if isinstance(k, int) or k in parent:
                return None
            parent[k] = copy.deepcopy(value)
    return doc


def link_variants():
    rel = {"linkType": "RELATION", "linkKind": "TRIGGER", "target": {"contextId": "c1"}}
    pth = {"linkType": "PATH", "from": {"contextId": "c2"}}
    end = {"linkType": "END", "from": {"contextId": "c3"}}
    out = [[], {}, "x", None, [{}], ["x"], [None], [[]], [rel, pth, end],
           [{"linkType": "END"}], [{"linkType": "START"}], [{"linkType": "end"}],
           [{"linkType": 1}], [{"linkType": "PATH"}], [{"linkType": "RELATION"}],
           [{"linkType": "RELATION", "linkKind": "T", "target": {}}],
           [{"linkType": "RELATION", "linkKind": "", "target": {}}],
           [{"linkType": "RELATION", "linkKind": "T"}],
           [{"linkType": "RELATION", "linkKind": "T", "target": {"contextId": ""}}],
           [{"linkType": "RELATION", "linkKind": "T", "target": {"contextId": 5}}],
           [{"linkType": "RELATION", "linkKind": "T", "target": {"x": 1}}],
           [{"linkType": "RELATION", "linkKind": "T", "target": "c1"}],
           [{"linkType": "PATH", "from": {}}], [{"linkType": "PATH", "from": {"contextId": ""}}],
           [{"linkType": "PATH", "from": {"contextId": "a", "more": True}}],
           [{"linkType": "END", "from": {}}], [{"linkType": "END", "tags": {}}],
           [{"linkType": "END", "tags": {"a": {"b": [1, None]}}}], [{"linkType": "END", "tags": []}],
           [{"linkType": "END", "tags": "t"}], [{"linkType": "END", "to": {"contextId": "x"}}],
           [{"linkType": "PATH", "from": {"contextId": "a"}, "to": {"contextId": "b"}}],
           [dict(rel, chainId="c")], [dict(pth, timestamp="2023-01-01T00:00:00Z")],
           [dict(end, linkKind="TRIGGER")], [dict(rel, linkType="PATH")],
           [dict(pth, linkType="RELATION")], [dict(end, linkType="RELATION")],
           [dict(rel, **{EXTRA_NAME: 1})], [rel, "x"], [end] * 3]
    return out


CUSTOM_DATA = [{}, {"a": 1}, {"nested": {"list": [1, "x", None]}}, "", "aGVsbG8=", "not base64!",
               42, 1.5, [], [1], None, True]
CUSTOM_DATA_CT = ["application/json", "", "x/y; charset=utf-8", 1, None, {}, []]


def singles(ev, schema, enum_pool):
    """Every single mutation of one event."""
    muts = []
    for path, v in walk(ev):
        ps = path
        fmts = formats_at(schema, path) if path else set()
        # removal
        if path and not isinstance(path[-1], int):
            req = is_required(schema, path)
            m = Mutation("remove-required" if req else "remove-optional", [("del", path, None)],
                         path if req else None)
            muts.append(m)
        # another JSON type
        for alt in OTHER_TYPES:
            if jtype(alt) == jtype(v):
                continue
            muts.append(Mutation("wrong-type" if path else "root-type", [("set", ps, alt)], path))
        if isinstance(v, str) and path != ("context", "type"):
            last = path[-1] if path else None
            if last in ("id", "contextId"):
                muts.append(Mutation("empty-id", [("set", ps, "")], path))
            else:
                muts.append(Mutation("empty-string", [("set", ps, "")]))
            if "date-time" in fmts or last == "timestamp":
                for s in DATETIMES:
                    muts.append(Mutation("date-time", [("set", ps, s)], path))
            if fmts & {"uri", "uri-reference"}:
                for s in URIS:
                    muts.append(Mutation("uri", [("set", ps, s)]))
            enums = enums_at(schema, path)
            if enums:
                for s in sorted(set(enum_pool) | {v.upper(), v.lower(), v.title(), v + " ",
                                                  " " + v, v + "\n"}):
                    if s != v:
                        muts.append(Mutation("enum", [("set", ps, s)]))
            if has_pattern_at(schema, path):
                for s in PATTERN_STRINGS:
                    muts.append(Mutation("pattern", [("set", ps, s)]))
            if not fmts and not enums:
                for s in STRINGS:
                    muts.append(Mutation("string", [("set", ps, s)]))
        if isinstance(v, dict):
            # unknown fields
            for val in ("v", {}, [1], None):
                muts.append(Mutation("extra-field", [("add", path + (EXTRA_NAME,), val)]))
            for k in EXTRA_NAMES:
                if k not in v:
                    muts.append(Mutation("extra-field", [("add", path + (k,), "v")]))
            # known-elsewhere names, and optional fields this schema knows
            known = known_props_at(schema, path)
            for k, sub in sorted(known.items()):
                if k in v:
                    continue
                muts.append(Mutation("add-optional", [("add", path + (k,), sample_value(sub))]))
                muts.append(Mutation("add-optional", [("add", path + (k,), "x")]))
            for k in ("id", "source", "type", "content", "version", "specversion", "chainId",
                      "schemaUri", "timestamp", "linkType", "tags", "links"):
                if k not in v and k not in known:
                    muts.append(Mutation("extra-field", [("add", path + (k,), "x")]))
    # links
    ctx = ev.get("context")
    if isinstance(ctx, dict):
        op = "set" if "links" in ctx else "add"
        for lv in link_variants():
            muts.append(Mutation("links", [(op, ("context", "links"), lv)]))
        for k, val in (("schemaUri", "https://example.org/s"), ("schemaUri", "/relative"),
                       ("schemaUri", ""), ("chainId", "c"), ("chainId", ""),
                       ("chainId", 7)):
            op = "set" if k in ctx else "add"
            muts.append(Mutation("context-optional", [(op, ("context", k), val)]))
    # customData
    for cd in CUSTOM_DATA:
        op = "set" if "customData" in ev else "add"
        muts.append(Mutation("customData", [(op, ("customData",), cd)]))
    for ct in CUSTOM_DATA_CT:
        op = "set" if "customDataContentType" in ev else "add"
        muts.append(Mutation("customData", [(op, ("customDataContentType",), ct)]))
    return muts


def ends_with_newline_where_ecma_differs(doc, schema):
    """DELIBERATE: a string ending in \\n under format uri/uri-reference or
    pattern, where Python's `$` and ECMA-262's `$` disagree."""
    for path, v in walk(doc):
        if isinstance(v, str) and v.endswith("\n"):
            if (formats_at(schema, path) & {"uri", "uri-reference"}) or has_pattern_at(schema, path):
                return True
    return False


# ---------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200,
                    help="random pairs of mutations per event (default 200)")
    ap.add_argument("--random", type=int, default=1000,
                    help="random URIs / date-times per format field of a few events")
    ap.add_argument("--seed", type=int, default=20240229)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    if not os.access(CLI, os.X_OK):
        sys.exit("test_schema_agreement: %s is missing; build it first with "
                 "`make test/unit/validate_cli` (or `make unit`)" % os.path.relpath(CLI, ROOT))
    t0 = time.time()
    load_schemas()
    enum_pool = sorted({e for s in STORE.values() for _, v in walk(s)
                        if isinstance(v, dict) and isinstance(v.get("enum"), list)
                        for e in v["enum"] if isinstance(e, str)
                        and not e.startswith("dev.cdevents")})
    rng = random.Random(args.seed)

    cases = []                  # (label, schema, Mutation)
    base_ok = []
    for rel, name, ev in base_events():
        etype = ev["context"]["type"]
        schema = EVENT_SCHEMAS.get((rel, None if etype.startswith("dev.cdeventsx.") else etype))
        if schema is None:
            sys.exit("test_schema_agreement: no %s schema for %s" % (rel, etype))
        base_ok.append((name, schema, ev))
        seen = {json.dumps(ev, sort_keys=True)}
        ms = singles(ev, schema, enum_pool)
        pairs = []
        for _ in range(args.pairs):
            a, b = rng.sample(ms, 2)
            m = Mutation("pair", a.ops + b.ops)
            pairs.append(m)
        for m in ms + pairs:
            doc = apply_ops(ev, m.ops)
            if doc is None:
                continue
            # never a context.type other than the original (it picks the schema)
            c = doc.get("context") if isinstance(doc, dict) else None
            if isinstance(c, dict) and isinstance(c.get("type"), str) and c["type"] != etype:
                continue
            text = json.dumps(doc, sort_keys=True)
            if text in seen:
                continue
            seen.add(text)
            m.doc, m.text = doc, text
            cases.append((name, schema, m))

        # Random URIs and date-times from grammar fragments, into every
        # field with that format (the first event of each release only).
        if name.endswith(("artifact_packaged.json", "custom/conformance.json")):
            for path, v in walk(ev):
                fmts = formats_at(schema, path) if path else set()
                if not isinstance(v, str) or not fmts:
                    continue
                tokens = URI_TOKENS if fmts & {"uri", "uri-reference"} else DATETIME_TOKENS
                for _ in range(args.random):
                    s = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 9)))
                    m = Mutation("random-format", [("set", path, s)],
                                 path if "date-time" in fmts else None)
                    ms.append(m)
                    doc = apply_ops(ev, m.ops)
                    text = json.dumps(doc, sort_keys=True)
                    if text not in seen:
                        seen.add(text)
                        m.doc, m.text = doc, text
                        cases.append((name, schema, m))

        # Duplicate keys in context: the last one wins, in Python's json,
        # in json-c and in jsonb alike.
        for k in ("id", "source", "timestamp", "version", "specversion"):
            good = ev["context"].get(k)
            if not isinstance(good, str):
                continue
            bad = {"id": "", "source": "a b", "timestamp": "2023-02-29T00:00:00Z"}.get(k, "")
            first = json.dumps({k: bad})[1:-1] + ", "
            text = json.dumps(ev, sort_keys=True).replace('"context": {', '"context": {' + first, 1)
            evbad = copy.deepcopy(ev)
            evbad["context"][k] = bad
            first = json.dumps({k: good})[1:-1] + ", "
            text2 = json.dumps(evbad, sort_keys=True).replace('"context": {',
                                                            '"context": {' + first, 1)
            for t in (text, text2):
                m = Mutation("duplicate-key", [])
                m.text, m.doc = t, json.loads(t)
                cases.append((name, schema, m))

    # The oracle.
    verdicts = []
    excluded_differ = 0
    for name, schema, m in cases:
        if ends_with_newline_where_ecma_differs(m.doc, schema):
            verdicts.append(None)
            continue
        verdicts.append(validator_for(schema).is_valid(m.doc))
    t_oracle = time.time() - t0

    # The C core, all in one process.
    lines = [json.dumps(ev) for _, _, ev in base_ok] + [m.text for _, _, m in cases]
    proc = subprocess.run([CLI, "strict"], input=("\n".join(lines) + "\n").encode(),
                          stdout=subprocess.PIPE, check=True)
    out = proc.stdout.decode("utf-8", "replace").split("\n")
    if len(out) < len(lines):
        sys.exit("test_schema_agreement: validate_cli printed %d lines for %d events"
                 % (len(out), len(lines)))

    passed = failed = 0
    fails = defaultdict(list)
    per_class = defaultdict(lambda: Counter())

    def fail(cls, msg):
        nonlocal failed
        failed += 1
        per_class[cls]["failed"] += 1
        fails[cls].append(msg)

    def check_ok_line(line, ev):
        """An accepted event: the extracted columns must be the event's."""
        parts = line.split(" ")
        t = ev["context"]["type"]
        body = t.split(".", 2)[2]
        subj, pred, ver = body.split(".", 2)
        want = ["ok", subj, pred, ver, str(parse_datetime(ev["context"]["timestamp"]))]
        return parts == want, want

    # the unmutated events
    for (name, schema, ev), line in zip(base_ok, out):
        cls = "conformance"
        per_class[cls]["total"] += 1
        if not validator_for(schema).is_valid(ev):
            fail(cls, "%s: the oracle rejects the original event" % name)
            continue
        per_class[cls]["valid"] += 1
        good, want = check_ok_line(line, ev)
        if not good:
            fail(cls, "%s: want %s, C says %s" % (name, " ".join(want), line))
        else:
            passed += 1
            per_class[cls]["passed"] += 1

    path_checked = 0
    for (name, schema, m), verdict, line in zip(cases, verdicts, out[len(base_ok):]):
        cls = m.cls
        per_class[cls]["total"] += 1
        c_ok = line.startswith("ok ")
        if verdict is None:
            per_class[cls]["excluded"] += 1
            excluded_differ += validator_for(schema).is_valid(m.doc) != c_ok
            continue
        per_class[cls]["valid" if verdict else "invalid"] += 1
        if c_ok != verdict:
            fail(cls, "%s: oracle %s, C %s\n      event: %s\n      C: %s" % (
                name, "valid" if verdict else "invalid", "valid" if c_ok else "invalid",
                m.text, line))
            continue
        if c_ok:
            good, want = check_ok_line(line, m.doc)
            if not good:
                fail(cls, "%s: want %s, C says %s\n      event: %s" % (name, " ".join(want),
                                                                      line, m.text))
                continue
        elif m.target is not None:
            problems = json.loads(line[len("invalid "):])
            path_checked += 1
            want = path_str(m.target)
            if not any(p["path"] == want for p in problems):
                fail(cls, "%s: C problems do not name %s\n      event: %s\n      C: %s" % (
                    name, want, m.text, line))
                continue
        passed += 1
        per_class[cls]["passed"] += 1

    print("# %d base events, %d mutated events (seed %d, %d pairs per event), oracle %.1fs" %
          (len(base_ok), len(cases), args.seed, args.pairs, t_oracle))
    print("# %-18s %8s %8s %8s %8s %8s" % ("class", "total", "valid", "invalid", "excluded",
                                            "failed"))
    for cls in sorted(per_class):
        c = per_class[cls]
        print("# %-18s %8d %8d %8d %8d %8d" % (cls, c["total"], c["valid"], c["invalid"],
                                               c["excluded"], c["failed"]))
    agree = sum(per_class[c]["valid"] + per_class[c]["invalid"] for c in per_class
                if c != "conformance")
    print("# verdicts compared on %d mutated events; problem paths checked on %d" %
          (agree, path_checked))
    print("# excluded as deliberate differences: %d (the verdicts differ on %d of them)" %
          (sum(per_class[c]["excluded"] for c in per_class), excluded_differ))
    for cls in sorted(fails):
        shown = fails[cls] if args.verbose else fails[cls][:5]
        for f in shown:
            print("FAIL [%s] %s" % (cls, f))
        if len(shown) < len(fails[cls]):
            print("FAIL [%s] ... and %d more (-v shows all)" % (cls, len(fails[cls]) - len(shown)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
