"""`predmesh outcomes push` against a real gRPC server, and `predmesh rollout` on a routing file."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from predmesh.cli import main
from predmesh.common.rollout import rollouts
from predmesh.v1 import outcomes_pb2, outcomes_pb2_grpc


class Recorder(outcomes_pb2_grpc.OutcomeServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[outcomes_pb2.RecordOutcomeRequest, str]] = []

    def RecordOutcome(self, request: Any, context: Any) -> outcomes_pb2.RecordOutcomeResponse:
        if not request.request_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id is required")
        self.calls.append((request, dict(context.invocation_metadata()).get("x-api-key", "")))
        return outcomes_pb2.RecordOutcomeResponse(request_id=request.request_id)


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    srv = grpc.server(futures.ThreadPoolExecutor(2))
    outcomes_pb2_grpc.add_OutcomeServiceServicer_to_server(recorder, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        srv.stop(0)


def test_outcomes_push_csv_and_jsonl(server: tuple[str, Recorder], tmp_path: Path) -> None:
    target, recorder = server
    csv_file = tmp_path / "o.csv"
    csv_file.write_text(
        "request_id,model,label,value,event_time\nr1,fraud,fraud,1,2026-11-30T12:00:00+00:00\n,fraud,x,,\n"
    )
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text('{"request_id": "r2", "model": "fraud", "value": 0, "event_time": 1700000000}\n')
    common = ["--target", target, "--plaintext", "--api-key", "k1", "--state-dir", str(tmp_path)]
    assert main(["outcomes", "push", str(csv_file), *common]) == 1  # the second row has no request id
    assert main(["outcomes", "push", str(jsonl), *common]) == 0
    (first, key1), (second, _) = recorder.calls
    assert (first.request_id, first.label, first.value, key1) == ("r1", "fraud", 1.0, "k1")
    assert first.event_time.seconds == int(datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp())
    assert (second.request_id, second.HasField("value"), second.value, second.event_time.seconds) == (
        "r2",
        True,
        0.0,
        1700000000,
    )


def test_rollout_pause_resume_abort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routing = tmp_path / "routing.yaml"
    route = {
        "versions": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}],
        "rollout": {"canary": "2", "steps": [20, 100], "step_started_s": 5.0},
    }
    routing.write_text(yaml.safe_dump({"models": {"fraud": route}}))
    args = ["--routing", str(routing), "--state-dir", str(tmp_path)]
    assert main(["rollout", "pause", "fraud", *args]) == 0
    assert rollouts(yaml.safe_load(routing.read_text()))["fraud"].state == "paused"
    assert main(["rollout", "resume", "fraud", *args]) == 0
    spec = rollouts(yaml.safe_load(routing.read_text()))["fraud"]
    assert spec.state == "running" and spec.step_started_s > 5.0  # the step's clock restarts
    assert main(["rollout", "status", "fraud", *args]) == 0
    out = capsys.readouterr().out
    assert "canary 2, state running, step 0 (20%)" in out and "1=80%, 2=20%" in out
    assert main(["rollout", "abort", "fraud", *args]) == 0
    doc = yaml.safe_load(routing.read_text())
    assert doc["models"]["fraud"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert rollouts(doc)["fraud"].state == "aborted"
    with pytest.raises(SystemExit, match="already aborted"):
        main(["rollout", "pause", "fraud", *args])
    with pytest.raises(SystemExit, match="no rollout"):
        main(["rollout", "pause", "other", *args])
