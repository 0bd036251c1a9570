#!/usr/bin/env python3
"""Every relative link in README.md and docs/*.md resolves: the file exists and, for a
'#fragment', the target has a heading with that GitHub-style anchor. Exits 1 listing the
broken ones."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
link = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


broken = []
for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
    text = doc.read_text(encoding="utf-8")
    for target in link.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{doc.relative_to(root)}: {target} (no such file)")
        elif frag and dest.suffix == ".md" and frag.lower() not in anchors(dest):
            broken.append(f"{doc.relative_to(root)}: {target} (no such heading)")
for b in broken:
    print("broken link:", b, file=sys.stderr)
sys.exit(1 if broken else 0)
