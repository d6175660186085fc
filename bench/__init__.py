"""``make bench``: the pipeline's throughput beside Kafka's and Postgres's own tools."""
