"""Parallel runs split partitions by integration group: a group's days never run side by side."""

from datetime import date, timedelta

from pipeline.automation.partitions import MappingDay
from pipeline.runner import shard_by_group

DAYS = [date(2026, 11, 1) + timedelta(days=k) for k in range(3)]


def partitions(business_numbers: list[str]) -> list[MappingDay]:
    return [MappingDay(bn, d) for d in DAYS for bn in business_numbers]


def test_each_group_stays_in_one_shard_in_its_order():
    group_of = {"11": 1, "12": 1, "21": 2, "31": 3, "32": 3, "41": 4}
    days = partitions(list(group_of))
    shards = shard_by_group(days, group_of, 2)
    assert len(shards) == 2
    assert sorted(str(d) for shard in shards for d in shard) == sorted(str(d) for d in days)
    for group in set(group_of.values()):
        holders = [
            i for i, shard in enumerate(shards) if any(group_of[d.business_number] == group for d in shard)
        ]
        assert len(holders) == 1, f"group {group} is split over shards {holders}"
        shard = shards[holders[0]]
        own = [d for d in shard if group_of[d.business_number] == group]
        assert own == [d for d in days if group_of[d.business_number] == group]


def test_shards_are_balanced_and_never_more_than_groups():
    group_of = {str(n): n for n in range(6)}
    shards = shard_by_group(partitions(list(group_of)), group_of, 3)
    assert [len(s) for s in shards] == [6, 6, 6]
    assert len(shard_by_group(partitions(["1", "2"]), {"1": 7, "2": 7}, 4)) == 1
    assert shard_by_group([], {}, 3) == []
