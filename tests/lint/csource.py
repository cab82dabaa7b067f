"""csource.py - what the lint scripts share: the tracked C files under some
folders, and their text with comments and literals blanked out, so a check
that greps code does not fire on prose or on strings.

Standard library only; imported by the scripts beside it."""

import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def tracked(folders, exts=(".c", ".h")):
    """Tracked files under folders (paths relative to the tree) ending in exts."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", *folders],
        cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.decode()
    return sorted(p for p in out.split("\0") if p.endswith(exts))


def code_only(text):
    """text with the contents of comments and of string and character literals
    replaced by spaces (the quotes stay), newlines kept, so line numbers and
    columns still match the file."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            inner = text[i + 1:j - 1]
            out.append(c + "".join(ch if ch == "\n" else " " for ch in inner) + text[j - 1])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
        return f.read()


def scan(folders, pattern, what):
    """(path, line, what) for every line of code (comments and strings
    blanked) under folders that pattern matches."""
    problems = []
    for path in tracked(folders):
        for no, line in enumerate(code_only(read(path)).split("\n"), 1):
            if pattern.search(line):
                problems.append((path, no, what))
    return problems


def report(check, problems, ok_text, fix_text):
    """Prints problems (path, line, message) as path:line: message, then one
    summary line; returns the exit status."""
    for path, line, msg in problems:
        print(f"{path}:{line}: {msg}")
    if problems:
        files = len({p for p, _, _ in problems})
        print(f"{check}: {len(problems)} in {files} files: {fix_text}")
        return 1
    print(f"{check}: {ok_text}")
    return 0


def main_guard(fn):
    try:
        sys.exit(fn())
    except subprocess.CalledProcessError as e:
        print(f"lint: {' '.join(e.cmd)} failed (not a git checkout?)")
        sys.exit(1)
