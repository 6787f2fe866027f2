"""One TLS context per process, shared by every HTTP client the pipeline builds.

httpx loads the CA bundle afresh for each `Client` (about 0.1 s of CPU); a run builds several clients per
partition (one per asset and API key), so sharing the context takes that off every partition. The context is
only read after creation, which makes sharing it between clients and threads safe.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """The default verifying context (system CA bundle, `SSL_CERT_FILE` honoured), built once."""
    return httpx.create_ssl_context()
