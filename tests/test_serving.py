"""The gRPC reward service against a real server on 127.0.0.1: predictions equal in-process ones,
malformed requests, tokens, health, message size, concurrency, and RewardFunction over gRPC."""

from __future__ import annotations

import io
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from hilreward.cli import main
from hilreward.deploy import RewardFunction, RewardOptions
from hilreward.errors import AuthError, BusyError, ConfigError, InputError, ServingError, UnavailableError
from hilreward.serving import GrpcBackend, RewardClient
from hilreward.serving.images import encode_image
from hilreward.serving.protos import hilreward_pb2 as pb
from hilreward.serving.protos import hilreward_pb2_grpc as pb_grpc
from hilreward.serving.config import ServeConfig
from hilreward.serving.server import RewardServer
from hilreward.serving.servicer import SERVICE_NAME

from support import TOKEN, step_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path_factory.mktemp("state")), token=TOKEN)
    with RewardServer(cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.address, token=TOKEN, timeout_s=10) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.address)
    yield pb_grpc.RewardServiceStub(channel)
    channel.close()


def test_grpc_results_equal_in_process_reward_function(client, ckpt, frames):
    local = RewardFunction.from_pretrained(ckpt)
    rows = [0, 60, 120, 200, 330, 420, 590]
    for i in rows:
        remote, want = client.predict(step_images(frames, i), episode_id=7, step=i), local(step_images(frames, i))
        assert remote.probability == pytest.approx(want.probability, abs=1e-6)
        assert (remote.success, remote.reward, remote.terminate) == (want.success, want.reward, want.terminate)
        assert remote.model_version == want.model_version and (remote.episode_id, remote.step) == (7, i)
        assert remote.class_probabilities == pytest.approx([1 - want.probability, want.probability], abs=1e-6)
        assert 0 < remote.server_latency_ms <= remote.latency_ms
    assert {local(step_images(frames, i)).success for i in rows} == {True, False}  # both outcomes covered
    streamed = client.predict_many([step_images(frames, i) for i in rows], episode_id=3)
    assert [r.step for r in streamed] == list(range(len(rows)))
    assert [r.probability for r in streamed] == pytest.approx(
        [local(step_images(frames, i)).probability for i in rows], abs=1e-6)


def test_png_frames_give_the_same_probability_as_raw(server, frames, ckpt):
    local = RewardFunction.from_pretrained(ckpt)
    with RewardClient(server.address, encoding="png") as png:
        for i in (10, 400):
            assert png.predict(step_images(frames, i)).probability == pytest.approx(
                local(step_images(frames, i)).probability, abs=1e-6)


def test_reward_function_over_grpc_backend(server, ckpt, frames):
    local = RewardFunction.from_pretrained(ckpt, consecutive=2)
    remote = RewardFunction.from_pretrained(None, backend="grpc", address=server.address, token=TOKEN,
                                            consecutive=2)
    assert isinstance(remote.backend, GrpcBackend)
    assert remote.options.success_threshold == local.options.success_threshold
    assert remote.camera_keys == local.camera_keys
    for i in range(395, 410):  # crosses the success onset of episode 2: the debounce matters
        a, b = remote(step_images(frames, i)), local(step_images(frames, i))
        assert (a.success, a.terminate, a.model_version) == (b.success, b.terminate, b.model_version)
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
    batch = {k: np.array(v[100:140]) for k, v in frames.images.items()}
    assert remote.relabel(batch, batch_size=16) == pytest.approx(local.relabel(batch), abs=1e-6)
    remote.close()
    with pytest.raises(ConfigError, match="address"):
        RewardFunction.from_pretrained(None, backend="grpc")


def test_human_override_over_grpc_becomes_a_stored_correction(server, frames):
    from hilreward.deploy import HumanOverride
    from hilreward.serving import GrpcCorrectionSink

    override = HumanOverride()
    backend = GrpcBackend(server.address)
    sink = GrpcCorrectionSink(server.address, token=TOKEN)
    fn = RewardFunction(backend, backend.model_version, RewardOptions(backend.threshold), override=override,
                        corrections=sink)
    success_row = int(np.flatnonzero(frames.labels == 1)[5])
    assert fn(step_images(frames, success_row)).success
    override.failure()  # the human disagrees with the classifier on the next step
    result = fn(step_images(frames, success_row))
    assert not result.success and result.override == "failure"
    assert len(sink.acks) == 1
    stored = server.store.read()[-1]
    assert stored.id == sink.acks[0].correction_id
    assert (stored.correction.label, stored.correction.model_version) == (0, backend.model_version)
    assert stored.correction.probability == pytest.approx(result.probability if isinstance(result.probability, float)
                                                          else result.probability[-1], abs=1e-6)
    fn.close()
    backend.close()


def test_concurrent_clients_each_get_their_own_answer(server, ckpt, frames):
    local = RewardFunction.from_pretrained(ckpt)
    rows = list(range(0, 596, 37))
    want = {i: local(step_images(frames, i)).probability for i in rows}
    got: dict[int, float] = {}
    errors: list[BaseException] = []

    def work(part: list[int]) -> None:
        try:
            with RewardClient(server.address) as c:
                for _ in range(3):
                    for i in part:
                        got[i] = c.predict(step_images(frames, i)).probability
                        assert got[i] == pytest.approx(want[i], abs=1e-6)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(rows[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert got.keys() == want.keys()


def _raw(camera: str, frame: np.ndarray) -> pb.Image:
    return encode_image(camera, frame, "raw")


def test_malformed_requests_get_invalid_argument_and_the_server_keeps_serving(stub, client, frames):
    good = step_images(frames, 5)
    front, wrist = _raw("front", good["front"]), _raw("wrist", good["wrist"])
    short = pb.Image(camera="front", height=128, width=128, data=front.data[:-3])
    bad_png = pb.Image(camera="front", height=128, width=128, encoding=pb.Image.PNG, data=b"\x89PNG\r\n\x1a\nnope")
    png = encode_image("front", good["front"], "png")
    wrong_declared = pb.Image(camera="front", height=64, width=128, encoding=pb.Image.PNG, data=png.data)
    cases = {
        "needs 49152 bytes": [short, wrist],
        "unknown camera 'top'": [front, _raw("top", good["wrist"])],
        "image data is empty": [pb.Image(camera="front", height=128, width=128), wrist],
        "cannot decode the PNG data": [bad_png, wrist],
        "but the PNG data is 128x128": [wrong_declared, wrist],
        "missing camera(s) observation.images.wrist": [front],
        "given twice": [front, front, wrist],
        "need height and width": [pb.Image(camera="front", data=b"\x00" * 12), wrist],
    }
    for message, images in cases.items():
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(pb.PredictRequest(images=images), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in err.value.details()
        assert client.predict(good).model_version  # the next valid request succeeds
    auth = (("authorization", f"Bearer {TOKEN}"),)
    for fields, message in [(dict(label=2), "label=2"), (dict(label=1, time=float("inf")), "time=inf: must be a finite"),
                            (dict(label=1, model_version="v", probability=float("nan")), "probability=nan: must be"),
                            (dict(label=1, source="s" * 100_000), "source is 100,000 characters long")]:
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitCorrection(pb.CorrectionRequest(images=[front, wrist], **fields), timeout=10, metadata=auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details(), message
        assert "\n" not in err.value.details()
    # the client turns INVALID_ARGUMENT into InputError with the server's message
    with pytest.raises(InputError, match="unknown camera 'top'"):
        client.predict({"front": good["front"], "wrist": good["wrist"], "top": good["front"]})
    assert client.predict(good).probability >= 0


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_decompression_bomb_is_refused_by_its_header_before_decoding(stub, client, frames):
    good = step_images(frames, 5)
    wrist = _raw("wrist", good["wrist"])
    bomb = _png(4096)  # ~50 KB that decodes to 48 MiB (8 at once took the server from 0.5 to 5.4 GB)
    assert len(bomb) < 100_000
    # a header that says 2000x2000 with no pixel data after it: judged by the header, never decoded
    header_only = _png(2000)[:100]
    for data in (bomb, header_only):
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(pb.PredictRequest(images=[pb.Image(camera="front", encoding=pb.Image.PNG, data=data), wrist]),
                         timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "over this server's limit of 2,304,000 (max_pixels)" in err.value.details()
    assert client.predict(good).model_version  # and it keeps serving


def test_idle_streams_past_the_cap_are_refused_and_predict_and_health_always_answer(ckpt, frames, tmp_path):
    """As many idle streams as worker threads (16, no token needed) once left no thread for Predict or the health
    check (DEADLINE_EXCEEDED): half of them now hold a thread each, the rest are refused at once."""
    good = step_images(frames, 5)
    request = pb.PredictRequest(images=[_raw(k, v) for k, v in good.items()])
    release = threading.Event()

    def one_step_then_idle():
        yield request
        release.wait(30)

    with RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path))) as srv:
        channel = grpc.insecure_channel(srv.address)
        stub, health = pb_grpc.RewardServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        calls, held, refused = [], 0, []
        for i in range(srv.cfg.workers):
            call = stub.PredictStream(one_step_then_idle(), timeout=60) if i % 2 else \
                stub.WatchModel(pb.WatchModelRequest(), timeout=60)
            calls.append(call)
            try:
                next(call)
                held += 1
            except grpc.RpcError as exc:
                refused.append((exc.code(), exc.details()))
        try:
            assert held == srv.cfg.workers // 2 == 8 and len(refused) == 8
            assert {code for code, _ in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert "8 streams are open, as many as this server allows (max_streams=8)" in refused[0][1]
            for _ in range(3):  # the held streams leave threads for the unary calls
                assert stub.Predict(request, timeout=5).model_version
                assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status == \
                    health_pb2.HealthCheckResponse.SERVING
            with RewardClient(srv.address, retries=0) as client, pytest.raises(BusyError, match="max_streams=8"):
                next(client.watch_model(timeout_s=5))
        finally:
            release.set()
            for call in calls:
                call.cancel()
            channel.close()
        deadline = time.monotonic() + 10  # a closed stream gives its slot back
        with RewardClient(srv.address) as client:
            while True:
                try:
                    assert next(client.watch_model(timeout_s=5)).version
                    break
                except BusyError:
                    assert time.monotonic() < deadline, "the closed streams never gave their slots back"
                    time.sleep(0.2)
    with pytest.raises(ConfigError, match="max_streams=16: must be within 1..workers-1"):
        RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path), max_streams=16))


def test_one_server_per_sqlite_state_dir_and_the_refusal_names_the_other(ckpt, tmp_path, capsys):
    """Two `hilreward serve` on one SQLite state dir both retrained and published: version numbers no longer
    followed content and the two ended on different versions, silently."""
    import os
    import signal

    from support import start_serve

    state = tmp_path / "state"
    proc, address = start_serve([f"checkpoint={ckpt}", f"state_dir={state}", "threads=1"], tmp_path / "port")
    try:
        with pytest.raises(ConfigError) as err:
            RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state)))
        message = str(err.value)
        assert f"state_dir={state} is in use by another `hilreward serve`" in message
        assert f"held by pid {proc.pid} on " in message and "store=postgresql://" in message
        assert main(["serve", f"checkpoint={ckpt}", f"state_dir={state}", "port=0"]) == 1  # the CLI: one line
        assert capsys.readouterr().err.strip().count("\n") == 0
        # another store in the same state dir is the same state dir (the versions folder is shared)
        with pytest.raises(ConfigError, match="is in use"):
            RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state), store=str(tmp_path / "b.db")))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the kernel drops the lock of a killed server
        proc.wait(30)
    with RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state))) as srv:
        assert srv.slot.current.number == 0
    with RewardServer(ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(state))):  # stop() let it go
        pass


def test_an_episode_keeps_its_version_past_many_new_ones_and_retention_keeps_what_episodes_use(ckpt, frames,
                                                                                               tmp_path):
    """Under frequent corrections an episode saw 26 version changes in 60 steps: the server held only the last 4
    versions it served and judged a step that named an older one with the newest. Versions were never removed."""
    import shutil

    from hilreward.online import events
    from hilreward.online.options import RetrainOptions
    from hilreward.serving.model_slot import PinOptions

    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path), retrain=RetrainOptions(keep_versions=2),
                      pins=PinOptions(idle_s=3.0, max_loaded=2))
    with RewardServer(cfg) as srv:
        versions = srv.versions

        def publish() -> str:  # a version as the retrainer publishes it, and the event it sends
            record = versions.publish(lambda tmp, _: shutil.copytree(versions.path(0), tmp, dirs_exist_ok=True),
                                      lambda n: f"{versions.get(0).version}-r{n}", {}, 0, 0)
            srv._handle(events.AttemptDone(True, "", {}, 0, [], time.time(), record.number, record.version))
            return record.version

        fn = RewardFunction.from_pretrained(None, backend="grpc", address=srv.address)
        first = publish()
        assert fn(step_images(frames, 0)).model_version == first  # the episode starts on version 1
        for i in range(1, 9):  # 8 newer versions, more than it holds in memory (2) or keeps on disk (2)
            assert publish() != first
            assert fn(step_images(frames, i)).model_version == first, f"step {i}"
        assert versions.numbers() == [0, 1, 8, 9]  # kept: the checkpoint, the episode's and the newest two
        fn.reset()
        assert fn(step_images(frames, 0)).model_version == versions.get(9).version  # a new episode: the newest
        time.sleep(3.5)  # the first episode's steps stop for longer than pins.idle_s: its version goes
        publish()
        assert versions.numbers() == [0, 9, 10]
        fn.close()


def test_corrections_need_the_token(server, frames):
    images = step_images(frames, 9)
    for token in (None, "wrong"):
        with RewardClient(server.address, token=token) as c:
            assert c.predict(images).model_version  # Predict is open unless auth_predict=true
            with pytest.raises(AuthError, match="UNAUTHENTICATED"):  # the error map: back to the same class
                c.submit_correction(images, label=0)
    with RewardClient(server.address, token=TOKEN) as c:
        before = c.get_model().corrections_total
        ack = c.submit_correction(images, label=0, episode_id=4, step=9)
        assert ack.corrections_total == before + 1 and ack.model_version == c.get_model().version
        assert c.get_model().corrections_total == before + 1
    stored = server.store.read()[-1].correction
    assert (stored.label, stored.episode, stored.step, stored.source) == (0, 4, 9, "programmatic")
    assert np.array_equal(stored.frames["observation.images.front"], images["front"])


def test_health_reports_serving(server, client):
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    channel.close()
    assert client.health() == "SERVING"


def test_wait_ready_waits_for_a_server_that_starts_later(ckpt, tmp_path):
    import socket
    with socket.socket() as s:  # a free port, then nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RewardClient(f"127.0.0.1:{port}", timeout_s=2) as early:
        t0 = time.monotonic()
        with pytest.raises(UnavailableError, match="no reward server"):
            early.wait_ready(timeout_s=0.5)
        assert time.monotonic() - t0 < 5
        cfg = ServeConfig(checkpoint=str(ckpt), port=port, state_dir=str(tmp_path))
        starter = threading.Timer(0.5, lambda: servers.append(RewardServer(cfg).start()))
        servers: list[RewardServer] = []
        starter.start()
        try:
            early.wait_ready(timeout_s=30)  # returns once the server listens
            assert early.health() == "SERVING"
        finally:
            starter.join()
            for srv in servers:
                srv.stop()


def test_strict_server_auth_predict_message_limit_and_debounce(ckpt, frames, tmp_path):
    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path), token=TOKEN, auth_predict=True,
                      max_message_mb=1, consecutive=2)
    with RewardServer(cfg) as srv:
        with RewardClient(srv.address) as anonymous:
            with pytest.raises(ServingError, match="UNAUTHENTICATED"):
                anonymous.predict(step_images(frames, 0))
        with RewardClient(srv.address, token=TOKEN) as c:
            big = np.zeros((1024, 1024, 3), dtype=np.uint8)  # 3 MiB > max_message_mb=1
            with pytest.raises(ServingError, match="RESOURCE_EXHAUSTED"):
                c.predict({"front": big, "wrist": big})
            local = RewardFunction.from_pretrained(ckpt, consecutive=2)
            onset = [i for i in range(400, 445) if local(step_images(frames, i)).success]
            assert onset, "episode 2 should reach success in frames 400-445"
            local.reset()
            for i in range(380, 445):
                want = local(step_images(frames, i))
                got = c.predict(step_images(frames, i), episode_id=2, step=i - 380)
                assert got.success == want.success, i


def test_config_errors():
    with pytest.raises(ConfigError, match="checkpoint="):
        RewardServer(ServeConfig())
    with pytest.raises(ConfigError, match="token"):
        RewardServer(ServeConfig(checkpoint="x", host="0.0.0.0"))
    with pytest.raises(ConfigError, match="mode="):
        RewardServer(ServeConfig(checkpoint="x", mode="shaped"))


def test_client_gives_up_after_bounded_retries_when_no_server():
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RewardClient(f"127.0.0.1:{port}", timeout_s=2, retries=2, backoff_s=0.05)
    start = time.perf_counter()
    with pytest.raises(UnavailableError, match="unavailable"):
        client.get_model()
    assert time.perf_counter() - start < 5
    client.close()


def test_console_api_streams_activity_labels_recent_frames_by_reference_and_reviews(ckpt, frames, tmp_path):
    """WatchActivity, SubmitRecentCorrection, GetQueries, ListCorrections, GetCorrection, ReviewCorrections and
    ListVersions on a server without retraining; bad requests get INVALID_ARGUMENT and serving goes on."""
    from hilreward.online.store import CorrectionStore
    from hilreward.serving.client import ModelInfo
    from hilreward.serving.records import RecentPrediction, RetrainerStatus
    from hilreward.serving.config import QueryOptions, RecentOptions

    cfg = ServeConfig(checkpoint=str(ckpt), port=0, state_dir=str(tmp_path), token=TOKEN,
                      recent=RecentOptions(size=8), queries=QueryOptions(size=3, min_need=0.0, min_gap=0))
    with RewardServer(cfg) as srv, RewardClient(srv.address, token=TOKEN) as client, \
            RewardClient(srv.address) as anonymous:
        stream = anonymous.watch_activity(timeout_s=30, frames_per_second=1000)
        first, status = next(stream), next(stream)
        assert isinstance(first, ModelInfo) and first.ensemble_size == 0 and first.number == 0
        assert isinstance(status, RetrainerStatus) and status.state == "off"
        rows = list(range(390, 402))  # around episode 2's success onset: both sides of the threshold
        sent = [step_images(frames, i) for i in rows]
        results = [client.predict(images, episode_id=7, step=s) for s, images in enumerate(sent)]
        assert [r.prediction_id for r in results] == list(range(1, 13))
        assert all(r.uncertainty is None for r in results)  # no ensemble without retraining
        seen = [next(stream) for _ in rows]
        assert all(isinstance(p, RecentPrediction) for p in seen)
        assert [p.prediction_id for p in seen] == [r.prediction_id for r in results]
        assert [p.probability for p in seen] == pytest.approx([r.probability for r in results], abs=1e-9)
        assert seen[0].images  # frames at most frames_per_second: the first one always has them
        thumb = seen[0].arrays()["observation.images.front"]  # a JPEG of the frame, 128 px <= max_side
        assert thumb.shape == (128, 128, 3) and np.abs(thumb.astype(int) - sent[0]["front"]).mean() < 8

        queued = anonymous.queries(frames=False)
        assert len(queued) == 3 and [q.need for q in queued] == sorted((q.need for q in queued), reverse=True)
        nearest = min(results, key=lambda r: abs(r.probability - first.threshold))
        assert queued[0].prediction.prediction_id == nearest.prediction_id

        # "The last 3 frames were a missed success": stored from the server's buffer, nothing uploaded.
        ack = client.correct_recent(label=1, last_k=3, episode_id=7)
        assert ack.prediction_ids == [r.prediction_id for r in results[-3:]] and len(ack.correction_ids) == 3
        one = client.correct_recent(label=0, prediction_ids=[results[5].prediction_id], source="query")
        with CorrectionStore(srv.store.path, readonly=True) as db:
            stored = db.read()
        assert [(s.correction.label, s.correction.step, s.correction.source) for s in stored] == \
            [(1, 9, "console"), (1, 10, "console"), (1, 11, "console"), (0, 5, "query")]
        assert np.array_equal(stored[0].correction.frames["observation.images.wrist"], sent[9]["wrist"])
        assert stored[3].correction.probability == pytest.approx(results[5].probability, abs=1e-9)
        assert stored[3].correction.model_version == results[5].model_version
        labelled = set(ack.prediction_ids + one.prediction_ids)
        assert [q.prediction.prediction_id for q in anonymous.queries(frames=False)] == \
            [q.prediction.prediction_id for q in queued if q.prediction.prediction_id not in labelled]

        bad = {"is not in the server's buffer": dict(label=0, prediction_ids=[results[0].prediction_id]),  # evicted
               "one of them": dict(label=0), "label=3": dict(label=3, last_k=1),
               "keeps only the last 8": dict(label=1, last_k=9),
               "no recent prediction to label in episode 99": dict(label=1, last_k=2, episode_id=99)}
        for message, kwargs in bad.items():
            with pytest.raises(InputError, match=message):
                client.correct_recent(**kwargs)
        for write in (lambda: anonymous.correct_recent(0, last_k=1), lambda: anonymous.reject([1])):
            with pytest.raises(ServingError, match="UNAUTHENTICATED"):
                write()

        # Review over gRPC: the same functions as `hilreward corrections ...`.
        listing = anonymous.list_corrections()
        assert [c.id for c in listing.corrections] == [4, 3, 2, 1] and listing.counts.pending == 4
        assert client.reject([ack.correction_ids[0]], note="blurry") == [1]
        detail = anonymous.get_correction(ack.correction_ids[0])
        assert detail.view.status == "rejected" and detail.view.status_detail == "rejected by console: blurry"
        assert [r.verdict for r in detail.reviews] == ["reject"] and detail.history == []
        assert np.array_equal(detail.arrays()["observation.images.front"], sent[9]["front"])  # PNG: lossless
        assert [c.id for c in anonymous.list_corrections(statuses=["rejected"]).corrections] == [1]
        assert anonymous.get_model().corrections.rejected == 1
        for message, call in {"no correction 99": lambda: anonymous.get_correction(99),
                              "verdict 'maybe'": lambda: client.review([1], "maybe"),
                              "unknown status 'weird'": lambda: anonymous.list_corrections(statuses=["weird"]),
                              "jpeg_quality=101": lambda: anonymous.queries(jpeg_quality=101)}.items():
            with pytest.raises(InputError, match=message):
                call()
        timeline = anonymous.versions()
        assert [(v.number, v.serving) for v in timeline.versions] == [(0, True)] and timeline.attempts == []
        assert client.predict(sent[0]).model_version == first.version  # the server keeps serving
