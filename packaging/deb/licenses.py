#!/usr/bin/env python3
"""Writes the licence texts of everything linked into the `lookout` binary, for the package's
/usr/share/doc/lookout/copyright: each crate the binary depends on (normal dependencies, not
build or dev ones), found through `cargo metadata`, with the licence files its source ships,
and the JavaScript vendored under web/.

Usage: licenses.py REPO_ROOT [TARGET_TRIPLE] > third-party.txt. A crate whose published source
carries no licence file is listed with its SPDX expression (and named on stderr). Identical
texts (most crates ship the same Apache-2.0 and MIT files) are written once, after the crates
that use them.
"""
import json
import pathlib
import subprocess
import sys



def host_triple():
    rustc = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(l.split(": ", 1)[1] for l in rustc.splitlines() if l.startswith("host: "))


root = pathlib.Path(sys.argv[1])
meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform",
         sys.argv[2] if len(sys.argv) > 2 else host_triple()],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
ours = next(p["id"] for p in meta["packages"] if p["name"] == "lookout")

# Everything reachable from lookout through normal dependencies.
linked, stack = set(), [ours]
while stack:
    pid = stack.pop()
    if pid in linked:
        continue
    linked.add(pid)
    for dep in nodes[pid]["deps"]:
        if any(k["kind"] is None for k in dep["dep_kinds"]):
            stack.append(dep["pkg"])
linked.discard(ours)

NAMES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "UNLICENSE")
missing = []
texts = {}  # licence text -> the crates that ship it
crates = []
for pid in sorted(linked, key=lambda i: (packages[i]["name"], packages[i]["version"])):
    p = packages[pid]
    name = f"{p['name']} {p['version']}"
    folder = pathlib.Path(p["manifest_path"]).parent
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.upper().startswith(NAMES))
    numbers = []
    for f in files:
        text = f.read_text(errors="replace").strip()
        texts.setdefault(text, []).append(name)
        numbers.append(list(texts).index(text) + 1)
    if not files:
        missing.append(name)
    spdx = p.get("license") or "see its licence file"
    refs = ", ".join(f"text {n}" for n in numbers) or "no licence file in the published crate"
    crates.append(f"{name}: {spdx} ({refs})")

out = ["Third-party software linked into /usr/bin/lookout", ""]
out += crates
out.append("")
for n, (text, users) in enumerate(texts.items(), 1):
    out.append("=" * 78)
    out.append(f"text {n}, shipped by: {', '.join(users)}")
    out.append("-" * 78)
    out.append(text)
    out.append("")

for f in sorted(root.glob("web/**/vendor/*/LICENSE")):
    out.append("=" * 78)
    where = f.parent.relative_to(root)
    out.append(f"{f.parent.name} (JavaScript, {where}, served to the dashboard and the guard app)")
    out.append(f.read_text(errors="replace").rstrip())
    out.append("")

print("\n".join(out))
if missing:
    print("crates without a licence file (SPDX expression only): " + ", ".join(missing), file=sys.stderr)
