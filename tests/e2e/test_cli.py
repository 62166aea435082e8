"""The `predmesh` CLI against the real mesh: predict through Envoy, batch, errors, logs tail."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from predmesh.cli import main
from predmesh.local.mesh import LocalMesh
from predmesh.local.procs import wait_until


def via_edge(mesh: LocalMesh) -> list[str]:
    """Target + credentials of the edge (TLS with the mesh CA, the generated API key)."""
    return ["--target", mesh.edge_address, "--cacert", str(mesh.ca_path), "--api-key", mesh.api_key]


def via_gateway(mesh: LocalMesh) -> list[str]:
    """The gateway directly: mutual TLS with the operator's certificate, plus the API key."""
    pki = mesh.pki_dir
    tls = ["--cacert", str(pki / "ca.crt"), "--cert", str(pki / "operator.crt"), "--key", str(pki / "operator.key")]
    return ["--target", mesh.gateway_address, *tls, "--api-key", mesh.api_key]


def test_batch_submit_works_right_after_up(
    mesh: LocalMesh, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`predmesh up` serves batch jobs on files under <state>/batch: submit (relative paths) and wait."""
    assert mesh.batch_jobs_on and mesh.batch_dir == mesh.state_dir / "batch"
    rows = 300
    pq.write_table(
        pa.table({"entity_id": [f"u{i % 200:05d}" for i in range(rows)], "amount": [float(i) for i in range(rows)]}),
        mesh.batch_dir / "in.parquet",
    )
    monkeypatch.chdir(mesh.state_dir)
    argv = ["batch", "submit", "batch/in.parquet", "--model", "fraud", "--out", "batch/out.parquet"]
    assert main([*argv, "--chunk-rows", "100", "--wait", "--poll", "0.1", *via_edge(mesh)]) == 0
    job = json.loads(capsys.readouterr().out)
    assert (job["state"], job["rows_done"], job["rows_failed"], job["chunks"]) == ("DONE", rows, 0, "3/3")
    out = pq.read_table(mesh.batch_dir / "out.parquet")
    assert out.column("row").to_pylist() == list(range(rows))
    assert all(0.0 <= s <= 1.0 for s in out.column("score").to_pylist())
    parts = mesh.batch_dir / "out.parquet.parts"
    wait_until(lambda: not parts.exists(), 10.0, "parts removed after DONE")  # removed right after DONE is stored
    outside = ["batch", "submit", "/etc/hosts.parquet", "--model", "fraud", "--out", "x.parquet"]
    assert main([*outside, *via_edge(mesh)]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err


def test_batch_score_from_this_machine_prints_a_summary(
    mesh: LocalMesh, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`predmesh batch score` (client side: PredictBatch calls through the edge) against the running mesh: a
    progress bar, a JSON summary, one output row per input row."""
    rows = 250
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"entity_id": [f"u{i % 200:05d}" for i in range(rows)], "amount": [1.5] * rows}), source)
    argv = ["batch", "score", str(source), "--model", "fraud", "--version", "1", "--out", str(tmp_path / "out.csv")]
    assert main([*argv, "--chunk-rows", "100", "--batch-items", "40", *via_edge(mesh)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["rows"], summary["scored_now"], summary["failed"]) == (rows, rows, 0)
    assert f"{rows}/{rows} rows" in captured.err  # the progress bar's last state
    out = pacsv.read_csv(tmp_path / "out.csv")
    assert out.column("row").to_pylist() == list(range(rows))
    assert {str(v) for v in out.column("version").to_pylist()} == {"1"}
    assert all(0.0 <= s <= 1.0 for s in out.column("score").to_pylist())


def test_predict_through_the_edge_prints_a_real_score(mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", *via_edge(mesh), "--model", "fraud", "--version", "1", "--entity", "u00042"]
    assert main([*argv, "--context", "amount=120.5", "channel=web", "hour_of_day=3"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["model"] == "fraud" and reply["model_version"] == "1"
    assert 0.0 <= reply["prediction"]["score"] <= 1.0 and reply["prediction"]["label"] in ("legit", "fraud")
    assert reply["degraded"] is False and reply["degraded_reason"] == ""  # every field, false ones included
    assert reply["missing_features"] == []
    # Every context value was typed (number / string) and used: none of them fell back to a default.
    assert not {"amount", "channel", "hour_of_day"} & set(reply.get("defaulted_features", []))


def test_several_entities_are_one_predict_batch(mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    entities = ["u00001", "u00002", "u00003"]
    assert main(["predict", *via_gateway(mesh), "--model", "fraud_nn", "--entity", *entities]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["entity_id"] for r in results] == entities
    assert all(r["model"] == "fraud_nn" and not r.get("degraded", False) for r in results)


def test_table_output_prints_every_field(mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", *via_edge(mesh), "--model", "fraud", "--version", "1", "--entity", "nobody-here"]
    assert main([*argv, "--output", "table"]) == 0
    rows = {line.split(" ", 1)[0]: line.partition(" ")[2] for line in capsys.readouterr().out.splitlines()}
    assert rows["model"].strip() == "fraud" and rows["model_version"].strip() == "1"
    assert rows["degraded"].strip() == "true" and rows["degraded_reason"].strip() == "features_missing"
    assert 0.0 <= float(rows["prediction.score"]) <= 1.0 and "timings.total_ms" in rows


def test_unknown_model_exits_1_with_the_grpc_status(mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", *via_edge(mesh), "--model", "no_such_model", "--entity", "u1"]) == 1
    assert capsys.readouterr().err.startswith("error: NOT_FOUND:")


def test_logs_tail_prints_decoded_prediction_events(mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", *via_gateway(mesh), "--model", "fraud", "--entity", "u00043"]) == 0
    capsys.readouterr()
    argv = ["logs", "tail", "--bootstrap", mesh.bootstrap_servers, "--from-beginning", "--max-messages", "200"]
    assert main([*argv, "--idle-timeout-s", "5"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [e for e in events if e.get("entity_id") == "u00043"]
    assert mine and mine[0]["model"] == "fraud" and mine[0]["features_hash"]
