"""create-bench: benchmark data and evaluation for Chinese short-video retrieval and titling/captioning."""

__version__ = "0.1.0"

#: Version of the on-disk shard contract (bump on any change to columns or layout).
SHARD_SCHEMA_VERSION = 2  # 2: optional title_omega column (1 still reads)
#: Version of the results JSON schema.
RESULTS_SCHEMA_VERSION = 1
