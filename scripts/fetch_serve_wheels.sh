#!/usr/bin/env bash
# scripts/fetch_serve_wheels.sh: downloads the wheels that `eli serve` and `eli bench serve` need
# (fastapi, uvicorn, prometheus-client, httpx and everything they require) for CPython 3.12 on
# manylinux x86-64 into .whl/, for the GPU machine, which has no package registry (see
# /work/.library/device/README.md, Notes). bench/gpu/device_bench.sh installs them there with
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
# and puts /tmp/site on PYTHONPATH for the serving benchmark only (never for the torch steps).
#
# Invariants: one version per package (two stop the whole install); the versions are those the
# serve tests pass with on the development machine; .whl/ is ignored through .git/info/exclude
# (never .gitignore); the script checks that every Requires-Dist (markers evaluated for CPython
# 3.12 on Linux, extras skipped) is satisfied by a downloaded wheel, and fails if one is missing.
#   usage: scripts/fetch_serve_wheels.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.whl"
PKGS=(
  fastapi==0.165.0 starlette==1.10.0 pydantic==2.13.4 pydantic-core==2.46.4
  typing-extensions==4.16.0 typing-inspection==0.4.2 annotated-types==0.7.0 annotated-doc==0.0.7
  opentelemetry-api==1.45.2 anyio==4.16.0 idna==3.20 sniffio==1.3.1
  uvicorn==0.54.0 h11==0.16.0 click==8.5.1
  prometheus-client==0.26.0
  httpx==0.28.1 httpcore==1.0.9 certifi==2026.5.20
)

EXCLUDE="$(git -C "$ROOT" rev-parse --git-path info/exclude 2>/dev/null || echo "$ROOT/.git/info/exclude")"
case "$EXCLUDE" in /*) ;; *) EXCLUDE="$ROOT/$EXCLUDE" ;; esac
if [ -f "$EXCLUDE" ] || [ -d "$(dirname "$EXCLUDE")" ]; then
  grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >>"$EXCLUDE"
fi

mkdir -p "$DEST"
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for spec in "${PKGS[@]}"; do
  name="${spec%%==*}"
  echo "== $spec"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLAT[@]}" -d "$DEST" "$spec"
done

# One wheel per distribution, and every requirement met.
python3 - "$DEST" <<'EOF'
import pathlib, re, sys, zipfile
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

dest = pathlib.Path(sys.argv[1])
have = {}
for whl in sorted(dest.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    name = re.search(r"^Name: (.+)$", text, re.M).group(1).strip()
    version = re.search(r"^Version: (.+)$", text, re.M).group(1).strip()
    key = canonicalize_name(name)
    if key in have:
        sys.exit(f"two wheels of {name}: {have[key][0]} and {version}; keep one")
    reqs = re.findall(r"^Requires-Dist: (.+)$", text, re.M)
    have[key] = (version, reqs, whl.name)
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
bad = []
for key, (version, reqs, fname) in have.items():
    for r in reqs:
        req = Requirement(r)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        dep = canonicalize_name(req.name)
        if dep not in have:
            bad.append(f"{key} {version} needs {r}: no wheel")
        elif req.specifier and not req.specifier.contains(Version(have[dep][0]), prereleases=True):
            bad.append(f"{key} {version} needs {r}: have {have[dep][0]}")
for key, (version, _, fname) in sorted(have.items()):
    print(f"   {fname}")
if bad:
    sys.exit("unmet requirements:\n  " + "\n  ".join(bad))
print(f"== {len(have)} wheels, all requirements met")
EOF
echo "== .whl: $(du -sh "$DEST" | cut -f1)"
