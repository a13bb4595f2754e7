"""Parallel collection on Ray: rollout workers as Ray actors, one driver that writes the store.

`salus collect --workers N` (or `--address`) runs N `RolloutWorker` actors, each with its own
simulator and policy ensemble, on a local Ray that the collection starts (bound to 127.0.0.1) or on
an existing cluster. The driver (`parallel_collection.run_parallel_collection`) hands out
`(episode_id, seed)` pairs, receives finished episodes with compressed images
(`episode_packing`), puts them back in id order (`reorder_buffer`) and writes them through the same
crash-safe `EpisodeWriter` as the in-process collection. Ray start-up and connection:
`ray_runtime`. Nothing here imports a front end.
"""
