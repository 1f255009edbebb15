#!/usr/bin/env python3
"""Check the shape of src/ that docs/design.md describes.

  tools/check_layout.py [-v] [SRC]

1. Includes point downward: a file includes headers of its own folder or of
   a folder below it (LAYERS, bottom first; the worker folders of the last
   layer do not include each other).  core/ includes no PostgreSQL header.
2. Within a folder, no file calls back into a file that calls it: the graph
   "a.c calls a function defined in b.c" has no cycle.  A function reached
   through a table of methods is not a call, which is how a folder's lower
   file hands work back to the upper one.
3. No C file over MAX_LINES lines, but for generated tables (a file that says
   GENERATED in its opening comment).

Reads the sources as text: calls are found by name, so a static function
of one file named like another file's extern function would be counted; the
project does not reuse names that way.  Exit status 1 on any violation.
"""
import os
import re
import sys

LAYERS = [["core"], ["common"], ["store"], ["webhook"], ["summaries"],
          ["http", "poll", "dispatch"], ["sources"]]
MAX_LINES = 800

RANK = {d: i for i, layer in enumerate(LAYERS) for d in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z_]+)/[^"]+"', re.M)
PG_INCLUDE = re.compile(r'^\s*#\s*include\s+"[^"]+"', re.M)
# A function definition: the name at the start of a line, then "(", in a
# file laid out by pgindent (return type on the line before).
DEFINITION = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)\(', re.M)
COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', re.S)


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def check_includes(src, problems):
    for folder in sorted(RANK):
        d = os.path.join(src, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            text = read(os.path.join(d, name))
            where = "%s/%s" % (folder, name)
            for target in INCLUDE.findall(text):
                if target not in RANK or target == folder:
                    continue
                if RANK[target] >= RANK[folder]:
                    problems.append("%s includes %s/: a folder not below %s/"
                                    % (where, target, folder))
            if folder == "core":
                for inc in PG_INCLUDE.findall(text):
                    if '"core/' not in inc:
                        problems.append("%s: %s (core/ includes no PostgreSQL "
                                        "header)" % (where, inc.strip()))


def call_graph(d):
    files = sorted(n for n in os.listdir(d) if n.endswith(".c"))
    bodies = {n: COMMENT.sub(" ", read(os.path.join(d, n))) for n in files}
    defined = {}
    for n in files:
        for fn in DEFINITION.findall(bodies[n]):
            defined.setdefault(fn, n)
    graph = {n: set() for n in files}
    for n in files:
        for fn in set(re.findall(r'\b([A-Za-z_][A-Za-z0-9_]*)\s*\(', bodies[n])):
            owner = defined.get(fn)
            if owner and owner != n:
                graph[n].add(owner)
    return graph


def find_cycle(graph):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "src")
    problems = []
    check_includes(src, problems)
    for folder in sorted(RANK, key=lambda f: (RANK[f], f)):
        d = os.path.join(src, folder)
        if not os.path.isdir(d):
            continue
        graph = call_graph(d)
        cycle = find_cycle(graph)
        if cycle:
            problems.append("%s/: files call each other in a cycle: %s"
                            % (folder, " -> ".join(cycle)))
        if verbose:
            for n in sorted(graph):
                if graph[n]:
                    print("%s/%s calls %s" % (folder, n, ", ".join(sorted(graph[n]))))
        for n in sorted(graph):
            text = read(os.path.join(d, n))
            lines = text.count("\n")
            if lines > MAX_LINES and "GENERATED" not in text[:2000]:
                problems.append("%s/%s: %d lines (at most %d)"
                                % (folder, n, lines, MAX_LINES))
    for p in problems:
        print("check_layout: " + p)
    print("check_layout: %s" % ("%d problem(s)" % len(problems) if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
