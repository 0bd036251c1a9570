#!/usr/bin/env python3
"""Fails if a src/ module includes a header from a layer it may not use.

The allowed edges mirror the CMake link graph (docs/ARCHITECTURE.md): a lower layer never
includes an upper one. System headers that belong to one layer only (FUSE, curl) are
checked too.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"

ALLOWED = {
    "base": {"base"},
    "crypto": {"base", "crypto"},
    "format": {"base", "crypto", "format"},
    "keys": {"base", "crypto", "format", "keys"},
    "keys/keyring": {"base", "crypto", "format", "keys", "keys/keyring"},
    "keys/aws": {"base", "crypto", "format", "keys", "keys/aws"},
    "keys/cache": {"base", "crypto", "format", "keys", "keys/cache"},
    "keys/intermediate": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate"},
    "keys/pool": {"base", "crypto", "format", "keys", "keys/pool"},
    "vault": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate", "keys/pool", "vault"},
    "fs": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate", "keys/pool", "vault", "fs"},
    "rotation": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate", "keys/pool", "vault", "rotation"},
    "fsck": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate", "keys/pool", "vault", "rotation", "fsck"},
    "control": {"base", "crypto", "format", "keys", "keys/cache", "keys/intermediate", "keys/pool", "vault", "fs", "rotation", "control"},
    "cli": None,  # the top: may use everything
}
# System headers only one module may include.
OWNED_SYSTEM = {r"fuse.*\.h": "fs", r"curl/.*": "keys/aws"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def module_of(rel: str) -> str:
    best = ""
    for m in ALLOWED:
        if (rel == m or rel.startswith(m + "/")) and len(m) > len(best):
            best = m
    return best


def main() -> int:
    errors = []
    for path in sorted(ROOT.rglob("*")):
        if path.suffix not in (".h", ".cc", ".hpp", ".cpp"):
            continue
        rel = path.relative_to(ROOT).as_posix()
        mod = module_of(rel.rsplit("/", 1)[0])
        if not mod:
            errors.append(f"{rel}: not in a known module (add it to tests/layering_test.py)")
            continue
        for kind, inc in INCLUDE.findall(path.read_text(errors="replace")):
            if kind == '"':
                target = module_of(inc.rsplit("/", 1)[0]) if "/" in inc else mod
                allowed = ALLOWED[mod]
                if allowed is not None and target not in allowed:
                    errors.append(f"{rel}: includes \"{inc}\" ({target or 'unknown'} layer), "
                                  f"but {mod} may only use {sorted(allowed)}")
            else:
                for pattern, owner in OWNED_SYSTEM.items():
                    if re.fullmatch(pattern, inc) and mod != owner:
                        errors.append(f"{rel}: includes <{inc}>, which only {owner} may use")
    for e in errors:
        print(e)
    print(f"layering: {len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
