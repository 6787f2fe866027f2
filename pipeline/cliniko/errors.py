"""One exception hierarchy for everything the Cliniko client can refuse or fail at.

Each message says what went wrong *and* what the operator should do, because these messages end up in a failed
Dagster run and are read by someone who did not write this code. No message ever contains an API key: at most
its mask (`pipeline.masking.mask`), which the callers pass in.
"""

from __future__ import annotations


class ClinikoError(Exception):
    """Base class: catch this to handle any Cliniko failure."""


class InvalidApiKey(ClinikoError, ValueError):
    """The key's suffix looks like a shard name but names no shard Cliniko has."""

    def __init__(self, masked_key: str, suffix: str, known: tuple[str, ...]) -> None:
        self.suffix = suffix
        super().__init__(
            f"Cliniko API key {masked_key} ends in '-{suffix}', which is not a Cliniko shard "
            f"(known shards: {', '.join(known)}). Copy the key again from Cliniko (My Info > Manage API "
            "keys); the part after the last '-' names the shard the account lives on."
        )


class InvalidUserAgent(ClinikoError, ValueError):
    """Cliniko may block requests whose User-Agent lacks a name and a contact e-mail."""

    def __init__(self, user_agent: str) -> None:
        super().__init__(
            f"User-Agent {user_agent!r} is not of the form 'App name (contact@example.com)'; Cliniko may "
            "block requests without a name and a valid contact e-mail. Set CLINIKO_USER_AGENT accordingly."
        )


class ClinikoAuthError(ClinikoError):
    """HTTP 401: revoked, mistyped or wrong-shard key. Cliniko does not say which."""

    def __init__(self, masked_key: str, shard: str | None, host: str) -> None:
        self.shard = shard
        self.host = host
        where = f"shard {shard} ({host})" if shard else host
        super().__init__(
            f"Cliniko rejected API key {masked_key} on {where} with HTTP 401. The key may be revoked or "
            "mistyped, or belong to another shard: a key sent to the wrong shard also gets a plain 401. "
            "Check that the key's suffix matches the account's shard, or create a new key in Cliniko (My "
            "Info > Manage API keys) and update the integration group."
        )


class ClinikoForbidden(ClinikoError):
    """HTTP 403: the key is valid, but its Cliniko user may not read this resource."""

    def __init__(self, resource: str, host: str) -> None:
        self.resource = resource
        super().__init__(
            f"Cliniko answered 403 Forbidden for {resource} on {host}: the Cliniko user who owns this API "
            "key is not allowed to read it. Give that user a role with access to it (Settings > Users & "
            "practitioners) or use a key of a user who has one."
        )


class ClinikoBadRequest(ClinikoError):
    """HTTP 400 (and other 4xx the client does not expect): a request Cliniko refuses to answer."""

    def __init__(self, status: int, resource: str, cliniko_message: str) -> None:
        self.status = status
        self.cliniko_message = cliniko_message
        super().__init__(
            f"Cliniko refused the request for {resource} with HTTP {status}: {cliniko_message!r}. This is a "
            "bug in the request the client built (filter, sort or page size), not in the data: report it "
            "with this message."
        )


class ClinikoRateLimited(ClinikoError):
    """Cliniko kept answering 429 although the client waited until `X-RateLimit-Reset` each time."""

    def __init__(self, resource: str, attempts: int) -> None:
        super().__init__(
            f"Cliniko answered 429 Too Many Requests {attempts} times in a row for {resource}. Something "
            "else is using this Cliniko user's request budget (200/min per user): another tool with a key "
            "of the same user, or a CLINIKO_RATE_LIMIT_PER_MINUTE set above the account's limit. Lower it "
            "or stop the other consumer, then re-run the partition."
        )


class ClinikoUnavailable(ClinikoError):
    """5xx, timeouts, dropped connections or malformed pages that outlasted every retry."""

    def __init__(
        self, resource: str, attempts: int, last_problem: str, base_url: str = "", from_setting: bool = True
    ) -> None:
        self.last_problem = last_problem
        where = f" at {base_url}" if base_url else ""
        if not from_setting and not last_problem.startswith(("HTTP", "malformed")):  # nothing answered
            advice = (
                f"CLINIKO_BASE_URL is unset, so the real Cliniko{where} was tried. For the demo or a local "
                "try, start `cliniko-reviews sandbox` and export the CLINIKO_BASE_URL and BIRDEYE_BASE_URL "
                "it prints; otherwise check this host's network."
            )
        else:
            advice = (
                "Cliniko may be having an outage or be slow for this account; re-run the partition later. If "
                "it keeps failing for one day only, that day's window may be too heavy to query in 30 s."
            )
        super().__init__(
            f"Cliniko{where} did not answer {resource} usefully after {attempts} attempts (last: "
            f"{last_problem}). {advice}"
        )
