"""The deployment files (deploy/) name commands, settings, paths and tags that exist in this repository.

No Docker or Kubernetes runs here; what can be checked without them is: every process they start is a real
command of the image, every variable they pass is one the product reads, every path they copy or load exists,
and the wrapper they start Dagster with writes the instance file that keeps the URL out of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.automation.instance import POSTGRES_URL_VARIABLE
from pipeline.automation.sensors import GROUP_TAG
from pipeline.cli import main
from pipeline.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
BIN = Path(sys.executable).parent


def read_variables() -> set[str]:
    """The environment variables the product reads (pipeline/settings.py, plus Dagster's own home)."""
    source = (PROJECT_ROOT / "pipeline" / "settings.py").read_text()
    return set(re.findall(r'_env\("([A-Z_]+)"', source)) | {"DAGSTER_HOME"}


def test_every_compose_service_runs_a_real_command_with_settings_the_product_reads():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = {name: s for name, s in compose["services"].items() if name != "postgres"}
    assert set(services) == {"code", "webserver", "daemon", "admin"}
    known = read_variables()
    for name, service in services.items():
        command = service["command"]
        assert command[0] == "cliniko-reviews" and command[1] in main.commands, name
        if command[1] == "dagster":
            assert (BIN / command[2]).exists(), f"{name}: {command[2]} is not installed"
        if "-w" in command:
            assert (PROJECT_ROOT / command[command.index("-w") + 1]).exists(), name
        assert set(service["environment"]) <= known, (name, set(service["environment"]) - known)
    code = services["code"]["command"]
    assert code[code.index("-m") + 1] == "pipeline.definitions"
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    [server] = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert (server["host"], str(server["port"])) == ("code", code[code.index("-p") + 1])


def test_the_image_copies_paths_that_exist_and_installs_the_pinned_uv():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (PROJECT_ROOT / source).exists(), line
    makefile_uv = re.search(r"UV_VERSION := (\S+)", (PROJECT_ROOT / "Makefile").read_text()).group(1)
    assert f'"uv=={makefile_uv}"' in dockerfile


def test_the_helm_values_run_the_code_location_and_limit_runs_per_group():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pipeline.definitions"]
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
        "tagConcurrencyLimits"
    ]
    assert {limit["key"] for limit in limits} == {"dagster/partition", GROUP_TAG}
    assert [s["name"] for s in deployment["envSecrets"]] == ["cliniko-reviews"]  # settings from a Secret
    text = (DEPLOY / "helm" / "values.yaml").read_text()
    assert re.search(r"postgres(ql)?://", text) is None and "postgresqlPassword:" not in text  # none inline


def test_the_dagster_wrapper_writes_the_instance_file_without_the_url(tmp_path):
    url = "postgresql://reviews:s3cret-password@db.example.internal:5432/reviews"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "DATA_DIR": str(tmp_path),
    }
    env.pop(POSTGRES_URL_VARIABLE, None)
    done = subprocess.run(
        [str(BIN / "cliniko-reviews"), "dagster", "dagster", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "dagster, version 1.13" in done.stdout
    written = (tmp_path / "home" / "dagster.yaml").read_text()
    assert f"env: {POSTGRES_URL_VARIABLE}" in written and "s3cret" not in written
    refused = subprocess.run(
        [str(BIN / "cliniko-reviews"), "dagster", "sh", "-c", "echo hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "sh is not a Dagster command" in refused.stderr
