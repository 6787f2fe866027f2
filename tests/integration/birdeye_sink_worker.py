"""A posting run in its own process for the crash and concurrency tests: `python birdeye_sink_worker.py JOB`.

The JOB file holds `warehouse`, `base_url`, `api_key`, `rows` and the keyword options of
`post_review_requests`. It prints `ready` once imported and starts posting when a line arrives on stdin, so
a test can time its kill or its second run against the posting, not Python's start-up. Then it prints the
counts by status as JSON.
"""

import json
import sys
from pathlib import Path

from pipeline.sink import post_review_requests

if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    print("ready", flush=True)
    sys.stdin.readline()
    options = job["options"] | {"rate_limit_dir": Path(job["options"]["rate_limit_dir"])}
    counts = post_review_requests(
        job["warehouse"], job["rows"], api_key=job["api_key"], base_url=job["base_url"], **options
    )
    print(json.dumps(counts), flush=True)
