"""driftwatch: a drift and model-monitoring daemon.

Kafka prediction events in; PSI/KS drift and performance decay out to
Prometheus and retraining webhooks.
"""

from __future__ import annotations

__version__ = "0.1.0"
