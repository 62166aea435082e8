"""The views on the real embedded ClickHouse: idempotent rows, arm stats, AUC equal to sklearn's."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import roc_auc_score

from services.sink.backends.chdb_store import ChdbStore
from services.sink.core import views
from services.sink.core.rows import event_row
from services.sink.core.schema import OUTCOME_COLUMNS, PREDICTION_COLUMNS
from services.sink.core.store import check_read_only
from services.sink.errors import InvalidArgument, QueryFailed
from tests.sink.support import outcome, prediction


def _insert(store: ChdbStore, events: list) -> None:
    rows = [r for r in (event_row(e) for e in events) if r is not None]
    for table, columns in (
        ("predictions", PREDICTION_COLUMNS),
        ("shadow_predictions", PREDICTION_COLUMNS),
        ("outcomes", OUTCOME_COLUMNS),
    ):
        store.insert(table, columns, [r.values for r in rows if r.table == table])


def test_redelivered_events_count_once(store: ChdbStore) -> None:
    events = [prediction(f"dup{i}", "dup", "1", "stable", 0.5) for i in range(10)]
    _insert(store, events)
    _insert(store, events[:7])  # at-least-once: a batch delivered again
    stats = store.query(views.arm_stats("predmesh", "dup")).dicts()
    assert [(s["model_version"], s["arm"], s["n"]) for s in stats] == [("1", "stable", 10)]


def test_arm_stats_per_version_and_arm(store: ChdbStore) -> None:
    events = [prediction(f"a{i}", "arms", "1", "stable", 0.2, latency_ms=float(i)) for i in range(100)]
    events += [prediction(f"b{i}", "arms", "2", "canary", 0.8, latency_ms=50.0, degraded=i < 5) for i in range(20)]
    _insert(store, events)
    stats = {(s["model_version"], s["arm"]): s for s in store.query(views.arm_stats("predmesh", "arms")).dicts()}
    assert stats[("1", "stable")]["n"] == 100
    assert stats[("1", "stable")]["p99_ms"] == pytest.approx(98.01, abs=0.5)
    assert stats[("2", "canary")]["bad_rate"] == pytest.approx(0.25)
    assert stats[("2", "canary")]["mean_score"] == pytest.approx(0.8)
    dist = store.query(views.score_distribution("predmesh", "arms")).dicts()
    assert {(d["model_version"], d["bin"], d["n"]) for d in dist} == {("1", 0.2, 100), ("2", 0.8, 20)}


def test_auc_of_joined_outcomes_equals_sklearn(store: ChdbStore) -> None:
    rng = random.Random(3)
    scores = [rng.random() for _ in range(400)]
    labels = [1.0 if rng.random() < s else 0.0 for s in scores]
    events = [prediction(f"q{i}", "auc", "1", "stable", s) for i, s in enumerate(scores)]
    # outcomes for 300 of them; one outcome sent twice (deduplicated), one for an unknown request (no join)
    outs = [outcome(f"q{i}", "auc", labels[i]) for i in range(300)] + [outcome("q0", "auc", labels[0])]
    _insert(store, [*events, *outs, outcome("nope", "auc", 1.0)])
    quality = store.query(views.outcome_quality("predmesh", "auc")).dicts()
    assert len(quality) == 1 and quality[0]["outcomes"] == 300
    assert quality[0]["auc"] == pytest.approx(roc_auc_score(labels[:300], scores[:300]), abs=1e-9)


def test_shadow_agreement(store: ChdbStore) -> None:
    live = [prediction(f"s{i}", "shadowed", "1", "stable", 0.3, label="legit") for i in range(10)]
    shadow = [
        prediction(f"s{i}", "shadowed", "2", "shadow", 0.5, label="legit" if i < 6 else "fraud") for i in range(10)
    ]
    _insert(store, live + shadow)
    [row] = store.query(views.shadow_agreement("predmesh", "shadowed")).dicts()
    assert (row["live_version"], row["shadow_version"], row["n"]) == ("1", "2", 10)
    assert row["mean_abs_diff"] == pytest.approx(0.2)
    assert row["label_agreement"] == pytest.approx(0.6)


def test_read_only_queries_only(store: ChdbStore) -> None:
    for bad in ("DROP TABLE predmesh.predictions", "SELECT 1; DROP TABLE x", "", "INSERT INTO t VALUES (1)"):
        with pytest.raises(InvalidArgument):
            check_read_only(bad)
    assert check_read_only("  select 1; ") == "select 1"
    with pytest.raises(QueryFailed):
        store.query("SELECT no_such_column FROM predmesh.predictions")


def test_non_finite_values_do_not_lose_the_batch(store: ChdbStore) -> None:
    _insert(
        store, [prediction("nan1", "nan", "1", "stable", float("nan")), prediction("ok1", "nan", "1", "stable", 0.5)]
    )
    stats = store.query(views.arm_stats("predmesh", "nan")).dicts()
    assert stats[0]["n"] == 2
