#!/usr/bin/python3
"""includes.py - tests include headers by name, through the include path.

A unit test of area <svc> is compiled with -iquote services/<svc> and
-iquote tests/unit/support (see the Makefile), so it writes
`#include "index.h"` or `#include "pgtest.h"`, never
`#include "../../../services/retriever/index.h"` or `"../support/pgtest.h"`:
those paths break as soon as a test or a module moves into a subfolder.

Area cli (the client, tools/cli/) works the same way with -iquote tools/cli.

Because those folders share one search path, a header name must not be found
in two of them: `#include "x.h"` would silently pick the first. This script
also fails when services/<svc>/ and tests/unit/support/ (or the test's own
folder) hold the same relative header path.
"""

import os
import re

import csource

INCLUDE = re.compile(r'^\s*#\s*include\s*["<]([^">]*)[">]')
# Reaching out of tests/unit/<area>/ by ../ into the tree or the fixtures.
ESCAPE = re.compile(r"^(?:\.\./)+(?:services|common|tools|support|unit)/|(?:\.\./){3}")
SUPPORT = "tests/unit/support"


def headers_under(folder, files):
    """Relative paths of the headers in files that lie under folder."""
    prefix = folder + "/"
    return {f[len(prefix):] for f in files if f.startswith(prefix) and f.endswith(".h")}


def main():
    problems = []
    for path in csource.tracked(["tests"]):
        for no, line in enumerate(csource.read(path).split("\n"), 1):
            m = INCLUDE.match(line)
            if m and ESCAPE.search(m.group(1)):
                problems.append((path, no, f'#include "{m.group(1)}": include it by name '
                                 f'("{os.path.basename(m.group(1))}"); the Makefile puts '
                                 "the service and tests/unit/support on the include path"))

    # One quote-include path per test area: its own folder, the service's (or
    # the tool's), support.
    files = csource.tracked(["services", "tools", "tests/unit"])
    support = headers_under(SUPPORT, files)
    areas = sorted({f.split("/")[2] for f in files
                    if f.startswith("tests/unit/") and f.count("/") >= 3} - {"support"})
    for area in areas:
        folders = [f"tests/unit/{area}", f"services/{area}", f"tools/{area}", SUPPORT]
        seen = {}
        for folder in folders:
            for h in sorted(headers_under(folder, files)):
                if h in seen:
                    problems.append((f"{folder}/{h}", 1,
                                     f'clashes with {seen[h]}/{h}: a unit test of {area} '
                                     f'including "{h}" would get only one of them; rename one'))
                else:
                    seen[h] = folder
    return csource.report(
        "includes", problems,
        "tests include service and support headers by name, and no name is found twice",
        "see tests/lint/includes.py")


if __name__ == "__main__":
    csource.main_guard(main)
