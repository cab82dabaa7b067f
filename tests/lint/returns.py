#!/usr/bin/python3
"""returns.py - no bare `return -1;` in services/, common/src/ and tools/.

A fallible function returns q_err_t: 0 or a negative code from the one table
in quarry/error.h, which says what went wrong; a predicate returns bool.
A bare -1 says neither (docs/development.md, Conventions).
"""

import re

import csource

FOLDERS = ["services", "common/src", "tools"]
BARE = re.compile(r"\breturn\s*\(?\s*-\s*1\s*\)?\s*;")


def main():
    problems = csource.scan(FOLDERS, BARE, "bare `return -1;`: return a q_err_t code (or bool)")
    return csource.report(
        "returns", problems, "no bare `return -1;` in " + ", ".join(FOLDERS),
        "return a named q_err_t (Q_EINVAL, Q_ENOMEM, ...) from quarry/error.h")


if __name__ == "__main__":
    csource.main_guard(main)
