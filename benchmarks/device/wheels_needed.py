"""The carried wheels (a folder of .whl files, e.g. .whl/gpu-peers) a device image needs: each one whose
package the image lacks or has at an older version (cuda-* packages are kept as the image has them). Prints
their paths, one a line; the choice for every wheel goes to stderr.

    python3 benchmarks/device/wheels_needed.py .whl/gpu-peers > need.txt
"""

import importlib.metadata as md
import pathlib
import sys

from packaging.version import Version

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    dist, version = wheel.name.split("-")[:2]
    try:
        have = md.version(dist)
    except md.PackageNotFoundError:
        have = None
    install = have is None or (Version(have) < Version(version) and not dist.startswith("cuda"))
    print(f"{dist} {version}: image {have} -> {'install' if install else 'keep'}", file=sys.stderr)
    if install:
        print(wheel)
