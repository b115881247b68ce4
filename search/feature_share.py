"""The search's driver step for small feature caches: one shared feature pass per frozen trunk, as a Ray task.

What is shared, the bound and why: trainables/feature_share.py. Ray is imported inside the function.
"""
from __future__ import annotations

import sys

from trainables.feature_share import OBJECT_STORE_MAX_BYTES, shared_pass, trunk_groups


def share_features(trial_configs: list[dict], data, *, cpus: float, gpus: float,
                   max_bytes: int = OBJECT_STORE_MAX_BYTES) -> dict[str, tuple[dict, object]]:
    """{cache key: (meta, ObjectRef of the features)} for the small caches; {} when Ray is not running
    or nothing caches. Pass it to the trials (`train_fold(..., feature_refs=...)`)."""
    import ray

    groups = trunk_groups(trial_configs)
    if not groups or not ray.is_initialized():
        return {}
    data_ref = ray.put(data)  # one copy in the store, not one per task
    task = ray.remote(shared_pass).options(num_cpus=cpus, num_gpus=gpus, num_returns=2)
    pending = [(config, *task.remote(config, data_ref, max_bytes, int(cpus) or None)) for config in groups]
    shared = {}
    for config, meta_ref, features_ref in pending:
        try:
            meta = ray.get(meta_ref)
        except ray.exceptions.RayError as error:  # the trials will compute it themselves, and say why
            print(f"feature cache: the shared pass for {config['backbone']} {config['method']} "
                  f"{config['freeze']} failed ({str(error).splitlines()[0]}); trials compute it themselves",
                  file=sys.stderr, flush=True)
            continue
        if meta["in_object_store"]:
            shared[meta["key"]] = (meta, features_ref)
    return shared
