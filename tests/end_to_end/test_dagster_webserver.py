"""The Dagster webserver as a data engineer starts it: `workspace.yaml`, a real process, its GraphQL API.

Loading `pipeline.definitions` in a test proves the Python imports; only the webserver proves that the code
location loads from `workspace.yaml` in a separate process (working directory, module name, environment) and
that the UI lists every asset, check, sensor and the job.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from webserver_support import dagster_webserver, graphql

from pipeline.definitions import defs

ASSETS = {
    "cliniko_businesses",
    "cliniko_appointment_types",
    "cliniko_appointments",
    "cliniko_patients",
    "cliniko_practitioners",
    "appointment_eligibility",
    "review_requests",
    "analytics_database",
}
GROUPS = {"cliniko_businesses": "cliniko", "appointment_eligibility": "models", "review_requests": "birdeye"}
CHECKS = {
    "cliniko_businesses:no_quarantined_rows",
    "cliniko_appointment_types:no_quarantined_rows",
    "cliniko_appointments:no_quarantined_rows",
    "cliniko_patients:no_quarantined_rows",
    "cliniko_practitioners:no_quarantined_rows",
    "appointment_eligibility:candidate_has_one_outcome",
    "appointment_eligibility:counts_reconcile",
    "appointment_eligibility:one_eligible_row_per_patient",
    "appointment_eligibility:restriction_codes_known",
    "appointment_eligibility:restriction_shares_stable",
    "review_requests:no_appointment_sent_twice",
    "analytics_database:calendar_alerts",
}
SENSORS = {"mapping_partitions_sensor", "calendar_sensor"}
JOB = "review_requests_job"

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""

REPOSITORY_QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        jobs { name }
        schedules { name cronSchedule scheduleState { status } }
        sensors { name sensorState { status } }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on a free port, with its own DAGSTER_HOME and DATA_DIR."""
    tmp = tmp_path_factory.mktemp("webserver")
    (tmp / "dagster_home").mkdir()
    with dagster_webserver(tmp / "dagster_home", tmp / "data", tmp / "webserver.log") as url:
        yield url


def test_the_code_location_loads_from_workspace_yaml(webserver: str) -> None:
    workspace = graphql(webserver, WORKSPACE_QUERY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace"
    locations = {e["name"]: e["locationOrLoadError"] for e in workspace["locationEntries"]}
    assert locations == {"cliniko_reviews": {"__typename": "RepositoryLocation"}}


def test_every_asset_and_check_is_loaded(webserver: str) -> None:
    nodes = graphql(webserver, ASSETS_QUERY)["assetNodes"]
    assets = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    checks = {f"{name}:{c['name']}" for name, n in assets.items() for c in n["assetChecksOrError"]["checks"]}

    assert set(assets) == ASSETS
    assert checks == CHECKS
    assert all(n["isPartitioned"] for n in assets.values())
    assert {name: assets[name]["groupName"] for name in GROUPS} == GROUPS
    # The literal lists above are the contract; the definitions must not have grown past them unnoticed.
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {k.to_user_string() for k in graph.asset_check_keys} == CHECKS


def test_the_job_and_sensors_are_loaded_and_running_by_default(webserver: str) -> None:
    [repository] = graphql(webserver, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s for s in repository["sensors"]}

    assert JOB in {j["name"] for j in repository["jobs"]}
    assert repository["schedules"] == []  # the calendar sensor runs each mapping by its own cadence
    assert set(sensors) == SENSORS
    assert {s["sensorState"]["status"] for s in sensors.values()} == {"RUNNING"}
    assert {s.name for s in defs.sensors or []} == SENSORS
