"""Regenerate the Python protobuf/gRPC modules from proto/ (``make proto``).

``python scripts/gen_proto.py OUT_DIR`` writes into OUT_DIR instead of src/, which the staleness
test uses to compare against the committed code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    """Generate every module under proto/ into out_dir; return the generated files."""
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(p for p in (out_dir / "opensergo" / "proto").rglob("*") if p.is_file())
    # Generated directories become packages.
    for directory in {p.parent for p in generated}:
        while directory != out_dir / "opensergo":
            (directory / "__init__.py").touch()
            directory = directory.parent
    return sorted(p for p in (out_dir / "opensergo" / "proto").rglob("*") if p.is_file())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src"
    for path in generate(target):
        print(path.relative_to(target))
