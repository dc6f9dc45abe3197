"""Build (and pre-fetch the dependencies of) the interop programs in interop/go and interop/java.

    python interop/build.py warm          # online: fill ~/.m2, the Go module cache and the Go build cache
                                          # (once; --force to redo it)
    python interop/build.py java          # offline: compile interop/java, print the java command
    python interop/build.py go OUT_DIR    # offline: generate the Go protos, build the Go client

The Go program needs Go bindings of the upstream OpenSergo protos. They are generated at build time
(into interop/go/upstream/, ignored by git) from the ``.proto`` files that the official Java SDK jar
``io.opensergo:opensergo-java-sdk:0.1.0`` ships, with protoc from ``grpcio-tools`` and
``protoc-gen-go`` built from the Go module cache. So the Go side decodes with upstream's own
definitions, not with this repository's copies, and nothing upstream is copied into the repository.

Offline builds set ``GOPROXY=off`` / ``GOFLAGS=-mod=readonly`` and ``mvn -o``: with warm caches they
never touch the network, and with cold caches they fail at once with a clear message instead of
downloading. The tests in tests/interop use :func:`build_go` and :func:`build_java`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GO_DIR = HERE / "go"
JAVA_DIR = HERE / "java"
GO_UPSTREAM = GO_DIR / "upstream"
GO_MODULE = "opensergo-interop"

JAVA_SDK = ("io.opensergo", "opensergo-java-sdk", "0.1.0")
JAVA_MAIN = "io.opensergo.interop.Main"

# proto file inside the Java SDK jar -> Go import path of the generated package
UPSTREAM_PROTOS = {
    "common/v1/common.proto": f"{GO_MODULE}/upstream/common/v1",
    "fault_tolerance/v1/fault_tolerance.proto": f"{GO_MODULE}/upstream/fault_tolerance/v1",
    "transport/v1/protocol.proto": f"{GO_MODULE}/upstream/transport/v1",
    "router/v1/route_fallback.proto": f"{GO_MODULE}/upstream/router/v1",
}
# imported by fault_tolerance.proto; its Go package comes from github.com/envoyproxy/protoc-gen-validate
VALIDATE_PROTO = "validate/validate.proto"


class BuildError(RuntimeError):
    pass


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise BuildError(
            f"{' '.join(cmd)} (in {cwd}) failed with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def go_binary() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise BuildError("go not found on PATH")
    return found


def mvn_binary() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise BuildError("mvn not found on PATH")
    return found


def _go_env(offline: bool) -> dict[str, str]:
    env = {"GOFLAGS": "-mod=readonly -buildvcs=false", "CGO_ENABLED": "0"}
    if offline:
        env["GOPROXY"] = "off"
    return env


def maven_repository() -> Path:
    """The local Maven repository (``$MAVEN_REPO_LOCAL`` or ~/.m2/repository, Maven's default)."""
    explicit = os.environ.get("MAVEN_REPO_LOCAL", "").strip()
    return Path(explicit) if explicit else Path.home() / ".m2" / "repository"


def java_sdk_jar() -> Path:
    group, artifact, version = JAVA_SDK
    jar = maven_repository().joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")
    if not jar.is_file():
        raise BuildError(f"{jar} is missing: run `python interop/build.py warm` once (online)")
    return jar


# --- Go -----------------------------------------------------------------------------------------


def _protoc_include() -> str:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    return str(Path(protoc.__file__).parent / "_proto")


def generate_go_protos(*, offline: bool = True) -> None:
    """(Re)generate interop/go/upstream from the protos inside the official Java SDK jar."""
    jar = java_sdk_jar()
    with zipfile.ZipFile(jar) as archive:
        sources = {name: archive.read(name) for name in [*UPSTREAM_PROTOS, VALIDATE_PROTO]}
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(sources.items()))).hexdigest()
    stamp = GO_UPSTREAM / ".source-sha256"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    with tempfile.TemporaryDirectory(prefix="opensergo-interop-proto-") as tmp:
        root = Path(tmp)
        for name, content in sources.items():
            target = root / "protos" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        plugin = root / "protoc-gen-go"
        _run(
            [go_binary(), "build", "-o", str(plugin), "google.golang.org/protobuf/cmd/protoc-gen-go"],
            cwd=GO_DIR,
            env=_go_env(offline),
        )
        out = root / "out"
        out.mkdir()
        mappings = [f"--go_opt=M{name}={package}" for name, package in UPSTREAM_PROTOS.items()]
        args = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root / 'protos'}",
            f"-I{_protoc_include()}",
            f"--plugin=protoc-gen-go={plugin}",
            f"--go_out={out}",
            f"--go_opt=module={GO_MODULE}",
            *mappings,
            *UPSTREAM_PROTOS,
        ]
        _run(args, cwd=root)
        staged = out / "upstream"
        if not staged.is_dir():
            raise BuildError(f"protoc produced no {staged}")
        (staged / ".source-sha256").write_text(digest + "\n")
        if GO_UPSTREAM.exists():
            shutil.rmtree(GO_UPSTREAM)
        shutil.copytree(staged, GO_UPSTREAM)


def build_go(out_dir: Path, *, offline: bool = True) -> Path:
    """Generate the upstream bindings and build the Go interop client; returns the binary."""
    generate_go_protos(offline=offline)
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "opensergo-interop-go"
    _run([go_binary(), "build", "-o", str(binary), "."], cwd=GO_DIR, env=_go_env(offline))
    return binary


# --- Java ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JavaProgram:
    classpath: str

    def command(self, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [java, "-cp", self.classpath, JAVA_MAIN, *args]


def build_java(*, offline: bool = True) -> JavaProgram:
    """Compile interop/java (one Maven run) and return how to run it with a plain ``java -cp``."""
    classpath_file = JAVA_DIR / "target" / "classpath.txt"
    cmd = [mvn_binary(), "-q", "-B"]
    if offline:
        cmd.append("-o")
    cmd += ["package", "dependency:build-classpath", f"-Dmdep.outputFile={classpath_file}"]
    _run(cmd, cwd=JAVA_DIR)
    jar = JAVA_DIR / "target" / "opensergo-interop-java.jar"
    if not jar.is_file() or not classpath_file.is_file():
        raise BuildError(f"maven did not produce {jar} and {classpath_file}")
    return JavaProgram(classpath=f"{jar}{os.pathsep}{classpath_file.read_text().strip()}")


# --- warm ---------------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[interop warm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _warm_stamp() -> Path:
    """A file named after everything the warm step fetches for: pom.xml, go.mod and go.sum."""
    digest = hashlib.sha256()
    for source in (JAVA_DIR / "pom.xml", GO_DIR / "go.mod", GO_DIR / "go.sum"):
        digest.update(source.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "opensergo" / "interop-warm" / digest.hexdigest()


def warm(*, force: bool = False) -> None:
    """Fetch every dependency once (online), then prove an offline build works.

    Instant when it already ran for the same pom.xml, go.mod and go.sum (and the Maven cache
    still holds the Java SDK): `make test` calls it every time.
    """
    stamp = _warm_stamp()
    if not force and stamp.is_file():
        try:
            java_sdk_jar()
        except BuildError:
            pass
        else:
            return
    started = time.monotonic()
    _progress(f"Maven: fetching the official Java SDK and plugins into {maven_repository()} (online)")
    _run([mvn_binary(), "-q", "-B", "dependency:go-offline"], cwd=JAVA_DIR)
    _progress("Maven: compiling interop/java")
    build_java(offline=False)
    _progress("Go: downloading the modules of interop/go (online)")
    _run([go_binary(), "mod", "download"], cwd=GO_DIR, env=_go_env(False))
    with tempfile.TemporaryDirectory(prefix="opensergo-interop-") as tmp:
        _progress("Go: generating the upstream protos and building interop/go")
        build_go(Path(tmp), offline=False)
        _progress("checking that both build offline")
        build_java(offline=True)
        build_go(Path(tmp), offline=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"warmed in {time.monotonic() - started:.0f} s\n")
    _progress(f"done in {time.monotonic() - started:.0f} s")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"warm", "go", "java"}:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "warm":
            warm(force="--force" in argv[1:])
            print("interop caches are warm")
        elif argv[0] == "java":
            print(" ".join(build_java().command()))
        else:
            out = Path(argv[1]) if len(argv) > 1 else GO_DIR / "bin"
            print(build_go(out))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
