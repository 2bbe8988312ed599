"""The run: records in, attempts paced by ``ratelimit``, answers classified (retry, refresh,
final), safety stops, read-before decisions, and the run's statistics."""
