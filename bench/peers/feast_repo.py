"""Build a Feast feature repo over the demo users, with Redis as the online store (benchmark peer).

Runs inside the Feast venv (`.predmesh/bench/venvs/feast`), never predmesh's:

    python bench/peers/feast_repo.py --repo DIR --redis HOST:PORT --users users.parquet [--sdk-calls N]

Writes `feature_store.yaml` (local provider, file registry, Redis online store), applies
one entity (`user`, join key `entity_id`) and one feature view (`user_features`, the six
stored demo features), writes the users into the online store with
`write_to_online_store`, checks one read, and with `--sdk-calls N` times N in-process
`get_online_features` calls for one entity (printed as JSON on the last line).
Afterwards `feast -c DIR serve` answers POST /get-online-features.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float64, Int64, String

SCHEMA = [
    ("account_age_days", Float64),
    ("txn_count_7d", Int64),
    ("avg_txn_amount_30d", Float64),
    ("chargeback_rate_90d", Float64),
    ("country", String),
    ("is_verified", Bool),
]
VIEW = "user_features"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--redis", required=True, help="host:port of the Redis online store")
    parser.add_argument("--users", type=Path, required=True, help="parquet: entity_id, features, event_timestamp")
    parser.add_argument("--sdk-calls", type=int, default=0)
    args = parser.parse_args()

    repo = args.repo.resolve()
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: predmesh_bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "online_store:\n"
        "  type: redis\n"
        f'  connection_string: "{args.redis}"\n'
        "offline_store:\n"
        "  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    users = pd.read_parquet(args.users)
    for column in ("entity_id", "country"):  # plain Python str, not arrow large_string
        users[column] = users[column].astype(object)
    user = Entity(name="user", join_keys=["entity_id"], value_type=ValueType.STRING)
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(days=3650),
        schema=[Field(name=name, dtype=dtype) for name, dtype in SCHEMA],
        source=FileSource(path=str(args.users.resolve()), timestamp_field="event_timestamp"),
        online=True,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, view])
    store.write_to_online_store(VIEW, users)
    refs = [f"{VIEW}:{name}" for name, _ in SCHEMA]
    first = str(users["entity_id"].iloc[1])
    check = store.get_online_features(features=refs, entity_rows=[{"entity_id": first}]).to_dict()
    if check["account_age_days"][0] is None:
        raise SystemExit(f"Feast read back nothing for {first}: {check}")

    result: dict[str, object] = {"entities": len(users), "check": {k: v[0] for k, v in check.items()}}
    if args.sdk_calls:
        ids = users["entity_id"].tolist()
        latencies = []
        for i in range(args.sdk_calls):
            began = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=[{"entity_id": ids[i % len(ids)]}]).to_dict()
            latencies.append(time.perf_counter() - began)
        latencies.sort()
        n = len(latencies)
        result["sdk"] = {
            "calls": n,
            "per_s_one_thread": n / sum(latencies),
            "p50_ms": latencies[n // 2] * 1000,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        }
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
