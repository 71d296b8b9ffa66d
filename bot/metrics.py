"""Prometheus metrics of the Slack surface (served at ``GET /metrics``)."""

from prometheus_client import Counter, Histogram

SLACK_REQUESTS = Counter(
    "opsgate_slack_requests_total", "Slack requests by kind and outcome", ["kind", "outcome"]
)
ACK_SECONDS = Histogram(
    "opsgate_slack_ack_seconds",
    "Time from receiving a Slack request to acknowledging it",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0),
)
VOTES = Counter("opsgate_votes_total", "Approval votes by outcome code", ["code"])
INCIDENTS = Counter("opsgate_incidents_opened_total", "Incidents opened", ["source"])
DISPATCHED = Counter(
    "opsgate_slack_dispatched_total",
    "Checked Slack requests by what dispatched them: the HTTP route itself, or Bolt",
    ["kind", "by"],
)
