"""A cap on the calls that hold a worker thread while they are open: the streams.

A gRPC server runs each call on one of its ``workers`` threads for as long as the call lasts, so an open
``PredictStream``, ``WatchModel``, ``WatchActivity`` or health ``Watch`` holds a thread until it ends. Without a
cap, ``workers`` idle streams (no token needed) leave no thread for ``Predict`` or the health check.
:class:`StreamLimit` lets at most ``max_streams`` be open at once and refuses the next one at once with
RESOURCE_EXHAUSTED (:class:`~hilreward.errors.BusyError`), so the other threads always answer the unary calls.
"""

from __future__ import annotations

import threading

import grpc

from ..errors import BusyError, status_of


class StreamLimit(grpc.ServerInterceptor):
    """Server interceptor: at most ``limit`` calls with a response stream open at once, over every service."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._code = getattr(grpc.StatusCode, status_of(BusyError(""))[0])

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or not (handler.unary_stream or handler.stream_stream):
            return handler
        kind = "unary_stream" if handler.unary_stream else "stream_stream"
        inner, method = getattr(handler, kind), details.method.rsplit("/", 1)[-1]

        def limited(request, context):
            if not self._slots.acquire(blocking=False):
                context.abort(self._code, f"{method} refused: {self.limit} streams are open, as many as this server "
                                          f"allows (max_streams={self.limit}); close one, or start the server with "
                                          "a larger max_streams= (and workers=)")
            try:
                yield from inner(request, context)
            finally:
                self._slots.release()

        return getattr(grpc, f"{kind}_rpc_method_handler")(limited, request_deserializer=handler.request_deserializer,
                                                           response_serializer=handler.response_serializer)
