"""The capacity model's arithmetic (predmesh.capacity) and `predmesh capacity`."""

from __future__ import annotations

import json
import math

import pytest

from predmesh.capacity import COALESCED, UNARY, Inputs, plan, pods_for, render
from predmesh.cli import main as cli_main


def test_pods_for_rounds_up_at_the_target_utilisation() -> None:
    assert pods_for(1000, 1000, 0.5) == 2  # 1 core of work at 50% -> 2 one-core pods
    assert pods_for(1001, 1000, 0.5) == 3
    assert pods_for(1, 1, 1.0) == 1  # never 0 pods for some load
    assert pods_for(0, 1000, 0.5) == 0


def test_100k_predictions_with_50_features() -> None:
    result = plan(Inputs(rps=100_000, features=50))
    features_us = (COALESCED.features_us + 4.8 * 44) * 1.08  # 5 shards: the cluster client's cost
    assert result.pods["features"] == math.ceil(100_000 * features_us / 1e6 / 0.5)
    assert result.pods["orchestrator"] == math.ceil(110_000 * COALESCED.orchestrator_us / 1e6 / 0.5)
    assert result.redis_ops_s == 100_000
    # CPU: 100k x 23 us = 2.3 cores at 50% -> 5 shards; network: 100k x 2000 B = 200 MB/s at 62.5 -> 4.
    assert result.redis_shards == 5 and result.redis_nodes == 10
    assert result.events_s == pytest.approx(110_000)
    assert result.event_bytes == 290
    assert result.kafka_brokers == 3
    assert result.kafka_partitions % result.kafka_brokers == 0 and result.kafka_partitions >= 7
    assert result.cores == sum(result.pods.values())


def test_scales_with_load_and_width() -> None:
    small, large = plan(Inputs(rps=10_000)), plan(Inputs(rps=1_000_000))
    assert large.redis_shards > small.redis_shards and large.kafka_brokers > small.kafka_brokers
    narrow, wide = plan(Inputs(rps=100_000, features=6)), plan(Inputs(rps=100_000, features=200))
    assert wide.pods["features"] > narrow.pods["features"]
    assert wide.redis_shards > narrow.redis_shards  # reply bytes bound the shards at 200 features
    logged = plan(Inputs(rps=100_000, log_features_sample=1.0))
    assert logged.kafka_mb_s > plan(Inputs(rps=100_000)).kafka_mb_s


def test_cache_hits_spare_redis_and_features() -> None:
    cold, warm = plan(Inputs(rps=100_000)), plan(Inputs(rps=100_000, cache_hit=0.5))
    assert warm.redis_ops_s == cold.redis_ops_s / 2
    assert warm.pods["features"] < cold.pods["features"]


def test_unary_profile_needs_more_cores_than_coalesced() -> None:
    assert plan(Inputs(rps=100_000, profile=UNARY)).cores > plan(Inputs(rps=100_000)).cores


@pytest.mark.parametrize(
    "inputs",
    [Inputs(rps=0), Inputs(rps=10, features=0), Inputs(rps=10, target_utilization=0), Inputs(rps=10, cache_hit=1)],
)
def test_bad_inputs(inputs: Inputs) -> None:
    with pytest.raises(ValueError):
        plan(inputs)


def test_render_shows_the_arithmetic() -> None:
    text = render(plan(Inputs(rps=100_000, features=50)))
    assert "| Redis Cluster shards (masters) | 5 |" in text
    assert "redis shards (CPU) = ceil(100,000 x 23 us / 0.5) = 5" in text


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["capacity", "--rps", "100000", "--features", "50"]) == 0
    assert "Kafka partitions" in capsys.readouterr().out
    assert cli_main(["capacity", "--rps", "100000", "--cost", "logger=100", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pods"]["logger"] == 22  # 110,000 events/s x 100 us / 0.5
    assert doc["inputs"]["profile"] == "coalesced+overrides"
    with pytest.raises(SystemExit) as exc:
        cli_main(["capacity", "--rps", "10", "--cost", "redis=1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli_main(["capacity", "--rps", "-1"])
    assert "rps" in str(exc.value.code)
