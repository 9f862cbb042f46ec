"""Executors decide where shard tasks run: in this process (local) or on Dask."""
