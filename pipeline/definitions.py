"""The one Definitions object: wires assets, checks, jobs, schedules, sensors and resources."""

import dagster as dg

defs = dg.Definitions(assets=[])
