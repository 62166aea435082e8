"""Server-side batch jobs in the chart: off by default; on, the gateway gets its allowed roots (a JSON
list GatewaySettings parses), pacing knobs and the Redis URL (once, also with the async queue on);
enabled without roots does not render."""

from __future__ import annotations

import pytest

from services.gateway.settings import GatewaySettings
from tests.helm.chart import BASE, HelmRun, env_of, main_container

PREFIX = "PREDMESH_GATEWAY_"


def test_off_by_default(helm_run: HelmRun) -> None:
    env = env_of(main_container(helm_run.template((BASE,)), "gateway"))
    assert not any(name.startswith(PREFIX + "BATCH_") for name in env)


def test_enabled_renders_settings_the_gateway_parses(helm_run: HelmRun) -> None:
    flags = ("--set", "batchJobs.enabled=true", "--set", "batchJobs.allowedRoots={s3://scoring/jobs/,gs://b/x/}")
    container = main_container(helm_run.template((BASE,), (*flags, "--set", "batchJobs.itemsPerCall=64")), "gateway")
    env = env_of(container)
    assert env[PREFIX + "ASYNC_REDIS_URL"] == "redis://redis-master:6379/0"
    fields = {k.removeprefix(PREFIX).lower(): v for k, v in env.items() if k.startswith(PREFIX + "BATCH_")}
    assert set(fields) <= set(GatewaySettings.model_fields)
    settings = GatewaySettings.model_validate_json(
        '{"batch_allowed_roots": '
        + fields["batch_allowed_roots"]
        + ', "batch_items_per_call": '
        + fields["batch_items_per_call"]
        + ', "batch_duty_cycle": '
        + fields["batch_duty_cycle"]
        + "}"
    )
    assert settings.batch_allowed_roots == ["s3://scoring/jobs/", "gs://b/x/"]
    assert settings.batch_items_per_call == 64 and settings.batch_duty_cycle == 1.0
    assert fields["batch_pace"] == "true"  # the adaptive pace is on unless turned off
    off = main_container(helm_run.template((BASE,), (*flags, "--set", "batchJobs.pace=false")), "gateway")
    assert env_of(off)[PREFIX + "BATCH_PACE"] == "false"

    both = main_container(helm_run.template((BASE,), (*flags, "--set", "asyncQueue.enabled=true")), "gateway")
    names = [e["name"] for e in both["env"]]
    assert names.count(PREFIX + "ASYNC_REDIS_URL") == 1


def test_enabled_without_roots_is_refused(helm_run: HelmRun) -> None:
    with pytest.raises(AssertionError, match="allowedRoots is required"):
        helm_run.template((BASE,), ("--set", "batchJobs.enabled=true"))
