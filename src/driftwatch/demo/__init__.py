"""``driftwatch demo``: a local broker, a drifting producer, a webhook receiver and the daemon."""
