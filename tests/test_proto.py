"""The committed generated gRPC code matches hilreward.proto and imports as a package module."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "src" / "hilreward" / "serving" / "protos"
GENERATED = ("hilreward_pb2.py", "hilreward_pb2.pyi", "hilreward_pb2_grpc.py")
# Lines naming the generator's version: a newer grpcio-tools may change them without the proto changing.
VERSION_LINE = re.compile(r"(Protobuf Python Version|GRPC_GENERATED_VERSION|^\s*\d+,\s*$)")


def _normalise(text: str) -> list[str]:
    return [line for line in text.splitlines() if not VERSION_LINE.search(line)]


def test_generated_code_is_not_stale(tmp_path):
    pytest.importorskip("grpc_tools")
    src = tmp_path / "src"
    (src / "hilreward" / "serving" / "protos").mkdir(parents=True)
    shutil.copy(PROTOS / "hilreward.proto", src / "hilreward" / "serving" / "protos" / "hilreward.proto")
    # The command of the proto's header and of `make proto`, writing into a temporary tree.
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(src), f"--python_out={src}", f"--pyi_out={src}",
           f"--grpc_python_out={src}", str(src / "hilreward" / "serving" / "protos" / "hilreward.proto")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    for name in GENERATED:
        fresh = (src / "hilreward" / "serving" / "protos" / name).read_text()
        committed = (PROTOS / name).read_text()
        assert _normalise(fresh) == _normalise(committed), (
            f"{name} is stale: hilreward.proto changed but the generated code was not regenerated; run `make proto`")


def test_proto_header_and_makefile_give_the_same_command():
    header = (PROTOS / "hilreward.proto").read_text()
    assert "python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src" in header
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nproto:", 1)[1].split("\n\n", 1)[0]
    assert "grpc_tools.protoc" in target and "hilreward.proto" in target


def test_generated_grpc_module_imports_through_the_package():
    text = (PROTOS / "hilreward_pb2_grpc.py").read_text()
    assert "from hilreward.serving.protos import hilreward_pb2" in text
    assert not re.search(r"^import hilreward_pb2", text, re.M)
    from hilreward.serving.protos import hilreward_pb2 as pb
    from hilreward.serving.protos import hilreward_pb2_grpc as pb_grpc

    service = pb.DESCRIPTOR.services_by_name["RewardService"]
    assert pb.DESCRIPTOR.package == "hilreward.v1"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {"Predict": (False, False), "PredictStream": (True, True), "SubmitCorrection": (False, False),
                       "GetModel": (False, False), "WatchModel": (False, True), "WatchActivity": (False, True),
                       "SubmitRecentCorrection": (False, False), "GetQueries": (False, False),
                       "ListCorrections": (False, False), "GetCorrection": (False, False),
                       "ReviewCorrections": (False, False), "ListVersions": (False, False)}
    assert hasattr(pb_grpc, "RewardServiceStub") and hasattr(pb_grpc, "add_RewardServiceServicer_to_server")
    assert pb.Image.Encoding.keys() == ["RAW_RGB8", "JPEG", "PNG"]
