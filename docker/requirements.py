"""Print the pip requirements of one image: the core dependencies of pyproject.toml plus the named extras.

    python docker/requirements.py edge --replace onnxruntime onnxruntime-gpu==1.26.0

``--replace NAME SPEC`` swaps a requirement for another build of the same module (onnxruntime and onnxruntime-gpu
both install ``onnxruntime/`` and overwrite each other, so a GPU image must never install both). A NAME that is not
among the requirements is an error, so a Dockerfile cannot silently drift from pyproject.toml. Standard library only
(Python 3.10 on JetPack 6 reads TOML with pip's vendored tomli).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return normalize(match.group(1))


def requirements(pyproject: dict[str, Any], extras: list[str], replace: dict[str, str]) -> list[str]:
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise ValueError(f"no such extra in pyproject.toml: {', '.join(unknown)} (have: {', '.join(optional)})")
    listed = list(project.get("dependencies", []))
    for extra in extras:
        listed.extend(optional[extra])
    wanted = {normalize(name): spec for name, spec in replace.items()}
    missing = set(wanted) - {requirement_name(requirement) for requirement in listed}
    if missing:
        raise ValueError(f"--replace names a package that is not required: {', '.join(sorted(missing))}")
    result: list[str] = []
    for requirement in listed:
        line = wanted.get(requirement_name(requirement), requirement)
        if line not in result:
            result.append(line)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="extras of pyproject.toml to add to the core dependencies")
    parser.add_argument("--replace", nargs=2, action="append", default=[], metavar=("NAME", "SPEC"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as handle:
        pyproject = tomllib.load(handle)
    try:
        lines = requirements(pyproject, args.extras, dict(args.replace))
    except ValueError as error:
        print(f"requirements.py: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
