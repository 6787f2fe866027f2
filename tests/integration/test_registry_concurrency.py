"""Two processes open a fresh registry (its SQLite file, or a new PostgreSQL database) and write groups and
mappings at the same time."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipeline.registry import Registry
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.secrets import SecretBox
from pipeline.registry.store import RegistryStore
from pipeline.settings import load_settings

PER_PROCESS = 25
SHARED_PARENT = "999000000000001"


def _group_args(parent: str, key: str) -> tuple:
    return (
        parent,
        118,
        [PropertyInput("cliniko.api.key", key, False, "integrationGroupProperties[0]")],
        [TriggerInput(129, 1, None, "integrationGroupTriggers[0]")],
    )


def _worker(path: str, database_url: str | None, key: str, worker: int, start, results) -> None:
    try:
        _write(path, database_url, key, worker, start, results)
    except Exception:  # the parent asserts on the traceback instead of timing out on an empty queue
        results.put((worker, traceback.format_exc(), None, None))


def _write(path: str, database_url: str | None, key: str, worker: int, start, results) -> None:
    start.wait()  # both processes create the schema of the same fresh registry at once
    store = RegistryStore(Path(path), SecretBox(Fernet(key)), database_url)
    made = []
    for index in range(PER_PROCESS):
        parent = f"{worker}00000000{index:04d}"
        group, _ = store.create_group(*_group_args(parent, f"KEY{worker}x{index}-au2"))
        mapping, _ = store.create_mapping(
            MappingInput(
                business_number=f"{worker}10000000{index:04d}",
                group_id=group["groupId"],
                properties=[
                    PropertyInput("cliniko.location.name", f"Clinic {worker}-{index}", False, "p"),
                ],
            )
        )
        made.append((group["groupId"], mapping["businessNumber"]))
    start.wait()  # and both ask for the same new group at once
    shared, created = store.create_group(*_group_args(SHARED_PARENT, "SHAREDKEY-au1"))
    results.put((worker, made, shared["groupId"], created))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_processes_write_at_once_and_nothing_is_lost(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request
) -> None:
    database_url = request.getfixturevalue("database_url") if store == "postgres" else None
    key = Fernet.generate_key().decode()
    path = tmp_path / "registry.sqlite3"
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(path), database_url, key, worker, start, results))
        for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    assert all(isinstance(made, list) for _, made, _, _ in outcomes), outcomes
    for process in workers:
        process.join(30)
        assert process.exitcode == 0

    made = [pair for _, pairs, _, _ in outcomes for pair in pairs]
    assert len({group for group, _ in made}) == 2 * PER_PROCESS
    assert outcomes[0][2] == outcomes[1][2]  # one shared group ...
    assert sorted(created for *_, created in outcomes) == [False, True]  # ... created once, found once

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_SECRET_KEY", key)
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
        assert not path.exists()
    registry = Registry.open(load_settings())
    snapshot = registry.store.snapshot()
    assert len(snapshot["integration_group"]) == 2 * PER_PROCESS + 1
    assert len(snapshot["integration_mapping"]) == 2 * PER_PROCESS
    configs = {config.business_number: config for config in registry.mappings()}
    assert set(configs) == {number for _, number in made}
    for group_id, number in made:
        worker, index = int(number[0]), int(number[-4:])
        assert configs[number].group_id == group_id
        assert configs[number].cliniko_api_key.reveal() == f"KEY{worker}x{index}-au2"
        assert configs[number].location_names == (f"Clinic {worker}-{index}",)
