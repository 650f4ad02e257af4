"""Generate the gRPC stubs the clients need, without tensorflow in the client venv.

Run by scripts/setup.sh (generate_grpc_stubs), in two venvs:

    .venv/tfserving/bin/python -m imgbench.clients.stubgen dump-tfserving --out build/protos/tfserving.pb
    .venv/core/bin/python -m imgbench.clients.stubgen generate \\
        --descriptor-set build/protos/tfserving.pb --torchserve-jar .../ts/frontend/model-server.jar \\
        --out imgbench/clients/_generated

TF Serving's protos exist only as compiled ``_pb2`` modules (which import all of TensorFlow), so the
first step serialises their FileDescriptorProtos, dependencies included, in the venv that has TF.
TorchServe's ``.proto`` files ship inside its frontend jar. Generated imports are rewritten under
``imgbench.clients._generated`` so nothing shadows or needs a real ``tensorflow`` package.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

TFSERVING_MODULES = (
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.model_service_pb2",
)
# Inside model-server.jar; status.proto comes from googleapis-common-protos at run time.
TORCHSERVE_PROTOS = {
    "inference.proto": "torchserve/inference.proto",
    "management.proto": "torchserve/management.proto",
}
STATUS_PROTO = "google/rpc/status.proto"
# Shipped by the protobuf runtime or googleapis-common-protos: never generated, never rewritten.
RUNTIME_PREFIXES = ("google/protobuf/", "google/rpc/")


def dump_tfserving(out: Path) -> None:
    from google.protobuf import descriptor_pb2

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def visit(file_descriptor) -> None:  # type: ignore[no-untyped-def]
        if file_descriptor.name in files:
            return
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        files[file_descriptor.name] = proto  # dependencies first, as protoc wants them

    for module in TFSERVING_MODULES:
        visit(importlib.import_module(module).DESCRIPTOR)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString())
    print(f"wrote {len(files)} file descriptors to {out}")


def _extract_torchserve(jar: Path, proto_root: Path) -> list[str]:
    with zipfile.ZipFile(jar) as archive:
        members = {Path(name).name: name for name in archive.namelist() if name.endswith(".proto")}
        for base, target in TORCHSERVE_PROTOS.items():
            if base not in members:
                raise SystemExit(f"{base} is not in {jar}; found {sorted(members)}")
            text = archive.read(members[base]).decode()
            (proto_root / target).parent.mkdir(parents=True, exist_ok=True)
            (proto_root / target).write_text(text)
        # Imported by inference.proto; compiled against, not generated (googleapis-common-protos has it).
        (proto_root / STATUS_PROTO).parent.mkdir(parents=True, exist_ok=True)
        (proto_root / STATUS_PROTO).write_bytes(archive.read(STATUS_PROTO))
    return list(TORCHSERVE_PROTOS.values())


def _rewrite_imports(out: Path, package: str) -> None:
    """``from tensorflow.core.framework import x_pb2`` -> ``from <package>.tensorflow.core... import``."""
    local_roots = {p.name for p in out.iterdir() if p.is_dir()}
    pattern = re.compile(r"^(from|import) (" + "|".join(sorted(local_roots)) + r")(\.|\s)", re.MULTILINE)
    for path in out.rglob("*.py"):
        text = path.read_text()
        path.write_text(pattern.sub(lambda m: f"{m[1]} {package}.{m[2]}{m[3]}", text))


def generate(descriptor_set: Path, torchserve_jar: Path, out: Path, package: str) -> None:
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    tfserving_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    tfserving_files = [f.name for f in tfserving_set.file if not f.name.startswith(RUNTIME_PREFIXES)]
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / "out"
        staging.mkdir()
        proto_root = Path(scratch) / "protos"
        torchserve_files = _extract_torchserve(torchserve_jar, proto_root)
        include = str(Path(protoc.__file__).parent / "_proto")  # google/protobuf/*.proto
        runs = [
            ["--descriptor_set_in", str(descriptor_set), *tfserving_files],
            [f"-I{proto_root}", f"-I{include}", *torchserve_files],
        ]
        for args in runs:
            code = protoc.main(["protoc", f"--python_out={staging}", f"--grpc_python_out={staging}", *args])
            if code != 0:
                raise SystemExit(f"protoc failed ({code}) for {args[:3]}...")
        _rewrite_imports(staging, package)
        for directory in [staging, *[p for p in staging.rglob("*") if p.is_dir()]]:
            (directory / "__init__.py").touch()
        (staging / "__init__.py").write_text('"""Generated by imgbench.clients.stubgen; not in git."""\n')
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staging, out)
    print(f"generated {len(tfserving_files) + len(torchserve_files)} protos into {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dump = commands.add_parser("dump-tfserving", help="serialise TF Serving's descriptors (needs TF)")
    dump.add_argument("--out", type=Path, required=True)
    gen = commands.add_parser("generate", help="generate Python stubs (needs grpcio-tools)")
    gen.add_argument("--descriptor-set", type=Path, required=True)
    gen.add_argument("--torchserve-jar", type=Path, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--package", default="imgbench.clients._generated")
    args = parser.parse_args(argv)
    if args.command == "dump-tfserving":
        dump_tfserving(args.out)
    else:
        generate(args.descriptor_set, args.torchserve_jar, args.out, args.package)


if __name__ == "__main__":
    sys.exit(main())
