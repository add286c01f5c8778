"""Where events come from: Kafka, or a JSON-lines file for replay; and reference files."""
