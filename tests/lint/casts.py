#!/usr/bin/python3
"""casts.py - no (ProtobufCMessage **) cast outside the gRPC adapter.

Such a cast hands a pointer to a typed reply to a function that writes a
ProtobufCMessage pointer: the compiler no longer checks that the reply type
is the one the method returns. Services, tools and tests call the typed stubs
instead; common/src/grpc.c (the adapter) and the generated code under build/
are the only places that may see the generic type, and neither is scanned.

A prototype's unnamed parameter, `f(ProtobufCMessage **)`, is not a cast: a
cast is directly followed by its operand (clang-format puts no space there).
"""

import re

import csource

FOLDERS = ["services", "tools", "tests"]
CAST = re.compile(r"\(\s*(?:const\s+)?ProtobufCMessage\s*\*\s*\*\s*\)(?=[\w&(*])")


def main():
    problems = csource.scan(FOLDERS, CAST, "(ProtobufCMessage **) cast: call the typed stub")
    return csource.report(
        "casts", problems, "no (ProtobufCMessage **) cast in " + ", ".join(FOLDERS),
        "use the typed gRPC stubs (only common/src/grpc.c sees ProtobufCMessage **)")


if __name__ == "__main__":
    csource.main_guard(main)
