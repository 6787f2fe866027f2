"""The calendar of SPEC §8: when partitions run and what "done" means.

`rules` (pure arithmetic: close times, due times, the catch-up horizon, backoff) and `planner` (what the
scheduler does for one mapping on one tick) know nothing of Dagster, DuckDB or the clock. `store` keeps the
runs of partitions and the alerts in the warehouse, `alerts` raises them (and posts them to the webhook), and
`coverage` builds every mapping's calendar for the sensor, `cliniko-reviews status` and the analysts' view.
"""
