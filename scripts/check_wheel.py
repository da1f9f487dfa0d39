#!/usr/bin/env python3
"""Check a built wheel carries what the image needs: the package, its data, the console script."""

import sys
import zipfile

REQUIRED = [
    "data_service/__init__.py",
    "data_service/cli.py",
    "data_service/couchdb/client.py",
    "data_service/openapi.yaml",
]


def main(path: str) -> int:
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        entry_points = next((wheel.read(n).decode() for n in names if n.endswith("entry_points.txt")), "")
    missing = [n for n in REQUIRED if n not in names]
    if "data-service = data_service.cli:main" not in entry_points:
        missing.append("console script data-service")
    for name in missing:
        print(f"check_wheel: {path} lacks {name}", file=sys.stderr)
    print(f"check_wheel: {path}: {len(names)} files" + ("" if missing else ", ok"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
