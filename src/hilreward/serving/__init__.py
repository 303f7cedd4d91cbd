"""hilreward.serving: the gRPC reward service (``hilreward serve``) and its Python client.

    from hilreward.serving import RewardClient
    client = RewardClient("127.0.0.1:50051", token=...)
    client.predict({"front": frame, "wrist": frame2}).probability
"""

from __future__ import annotations

from typing import Any

__all__ = ["RewardClient", "GrpcBackend", "GrpcCorrectionSink", "ModelInfo", "CorrectionAck", "RemoteRewardResult",
           "RewardServer", "ServeConfig"]


def __getattr__(name: str) -> Any:  # lazy: importing the package does not start grpc or torch
    if name in ("RewardClient", "GrpcBackend", "GrpcCorrectionSink", "ModelInfo", "CorrectionAck",
                "RemoteRewardResult"):
        from . import client

        return getattr(client, name)
    if name in ("RewardServer", "ServeConfig"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'hilreward.serving' has no attribute {name!r}")
