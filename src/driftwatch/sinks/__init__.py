"""Where results go: Prometheus, webhooks (through a durable outbox), HTTP endpoints."""
