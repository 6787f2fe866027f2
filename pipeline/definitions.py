"""The one Definitions object: wires assets, checks, jobs, sensors and resources."""

import dagster as dg

from pipeline.assets.ingest import (
    cliniko_appointment_types,
    cliniko_appointments,
    cliniko_businesses,
    cliniko_patients,
)
from pipeline.assets.models import appointment_eligibility
from pipeline.assets.sink import analytics_database, calendar_alerts, review_requests
from pipeline.automation.resources import system_resources
from pipeline.automation.sensors import calendar_sensor, mapping_partitions_sensor, review_requests_job

defs = dg.Definitions(
    assets=[
        cliniko_businesses,
        cliniko_appointment_types,
        cliniko_appointments,
        cliniko_patients,
        appointment_eligibility,
        review_requests,
        analytics_database,
    ],
    asset_checks=[calendar_alerts],
    jobs=[review_requests_job],
    sensors=[mapping_partitions_sensor, calendar_sensor],
    resources=system_resources(),
    # Runs the UI launches (asset backfills, "Materialize") run their steps in the run's own process, like
    # `review_requests_job`: a subprocess per step costs more than the step on a two-core machine.
    executor=dg.in_process_executor,
)
