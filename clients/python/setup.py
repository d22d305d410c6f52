"""Build steps of fstore-client that pyproject.toml cannot say.

The gRPC stubs (``fstore_client/_proto``) are generated while the package is
built, from the fstore repository's ``proto/fstore/v1/fstore.proto`` (two
folders above this one), with the grpcio-tools of the build environment.
They are never committed. An sdist carries a copy of the proto, so that a
wheel can also be built from it away from the repository.

The generated code checks at import that the installed grpcio and protobuf
are at least the versions it was generated with, so those are the package's
runtime requirements, read off the grpcio-tools that runs here.
"""

import os
import re
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_REL = os.path.join("fstore", "v1", "fstore.proto")
# In the repository: clients/python/../../proto. In an sdist: ./proto.
PROTO_ROOTS = [
    os.path.normpath(os.path.join(HERE, "..", "..", "proto")),
    os.path.join(HERE, "proto"),
]
GENERATED_PACKAGE = os.path.join("fstore_client", "_proto")


def proto_root():
    for root in PROTO_ROOTS:
        if os.path.isfile(os.path.join(root, PROTO_REL)):
            return root
    tried = "\n  ".join(os.path.join(r, PROTO_REL) for r in PROTO_ROOTS)
    sys.exit(
        "fstore-client: cannot find the fstore gRPC contract; looked for\n  "
        + tried
        + "\nBuild the package from the fstore repository (pip install ./clients/python "
        "from the repository's root), or from an sdist made there, which carries a copy."
    )


def tool_versions():
    """(grpcio version, protobuf version) the stubs will need at run time."""
    try:
        from grpc_tools import protoc  # noqa: F401  (only whether it is there)
    except ImportError:
        sys.exit(
            "fstore-client: building the gRPC stubs needs grpcio-tools; it is a build "
            "requirement in pyproject.toml, so a plain `pip install` brings it. With "
            "--no-build-isolation, install it first: pip install grpcio-tools"
        )
    from importlib.metadata import version

    return version("grpcio-tools"), version("protobuf")


def generate(out_dir):
    """Write fstore_pb2.py, fstore_pb2.pyi and fstore_pb2_grpc.py into out_dir/fstore_client/_proto."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    target = os.path.join(out_dir, GENERATED_PACKAGE)
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            "-I" + root,
            "-I" + well_known,
            "--python_out=" + tmp,
            "--pyi_out=" + tmp,
            "--grpc_python_out=" + tmp,
            os.path.join(root, PROTO_REL),
        ]
        if protoc.main(args) != 0:
            sys.exit("fstore-client: grpc_tools.protoc failed on " + os.path.join(root, PROTO_REL))
        made = os.path.join(tmp, "fstore", "v1")
        for name in ("fstore_pb2.py", "fstore_pb2.pyi", "fstore_pb2_grpc.py"):
            with open(os.path.join(made, name), encoding="utf-8") as f:
                text = f.read()
            # protoc writes the import as the proto's package path; the stubs
            # live inside fstore_client, so make it relative.
            text = re.sub(
                r"^from fstore\.v1 import fstore_pb2 as ", "from . import fstore_pb2 as ", text, flags=re.M
            )
            with open(os.path.join(target, name), "w", encoding="utf-8") as f:
                f.write(text)
    with open(os.path.join(target, "__init__.py"), "w", encoding="utf-8") as f:
        f.write('"""gRPC stubs generated from proto/fstore/v1/fstore.proto at build time."""\n')
    return target


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # An editable install imports from src/: generate there (ignored by git).
            generate(os.path.join(HERE, "src"))
        else:
            generate(self.build_lib)

    def get_outputs(self, include_bytecode=1):
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            target = os.path.join(self.build_lib, GENERATED_PACKAGE)
            for name in ("__init__.py", "fstore_pb2.py", "fstore_pb2.pyi", "fstore_pb2_grpc.py"):
                outputs.append(os.path.join(target, name))
        return outputs


class SdistWithProto(sdist):
    """Carry the proto in the sdist, where ../../proto does not exist."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        dest = os.path.join(base_dir, "proto", os.path.dirname(PROTO_REL))
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(os.path.join(proto_root(), PROTO_REL), os.path.join(dest, "fstore.proto"))


def install_requires():
    grpc_version, protobuf_version = tool_versions()
    major = int(protobuf_version.split(".")[0])
    return [
        "grpcio>=" + grpc_version,
        "protobuf>={},<{}".format(protobuf_version, major + 1),
    ]


proto_root()  # fail early, before any metadata, when the contract is not there

setup(
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto},
    install_requires=install_requires(),
)
