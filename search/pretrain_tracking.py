"""MLflow logging of one `cxrtune pretrain` run, kept in the search room so that `trainables` imports no MLflow.

`pretraining_logger(tracking_uri)` is the `log_run` that `trainables.pretrain.pretrain` calls once the
weights are saved: one run in the experiment `cxrtune-pretrain` (tag `cxrtune.kind=pretrain`, named after the
weights, e.g. `resnet50.chestxray8`) with the config as params, every epoch's metrics (step = epoch), and the
weights file and its card as artifacts under `weights/`. The card then names the run (`mlflow_run_id`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from functools import partial
from pathlib import Path

from search.tracking import absolute_tracking_uri, artifact_location

EXPERIMENT = "cxrtune-pretrain"
MAX_METRICS_PER_BATCH = 1000  # MLflow refuses a log_batch call with more


def pretraining_logger(tracking_uri: str | None):
    """The `log_run` callable for `pretrain`, logging to `tracking_uri`; None (nothing logged) without one."""
    if not tracking_uri:
        return None
    return partial(log_pretraining, absolute_tracking_uri(tracking_uri))


def log_pretraining(tracking_uri: str, card, config: dict, history: list[dict], weights_dir: Path):
    """Log a finished pretraining (its WeightCard, trial-style config and per-epoch reports) as one run;
    writes the card, now naming the run, into `weights_dir` and returns it."""
    import mlflow
    from mlflow.entities import Metric, Param

    from trainables.weights import write_card

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(EXPERIMENT, artifact_location=artifact_location(tracking_uri)))
    run_id = client.create_run(experiment_id, run_name=card.name, tags={"cxrtune.kind": "pretrain"}).info.run_id
    card = dataclasses.replace(card, mlflow_run_id=run_id)
    params = {**config, "source": card.source, "source_dataset": card.source_dataset}
    now_ms = int(time.time() * 1000)  # MLflow timestamps are milliseconds
    metrics = [Metric(key, float(value), now_ms, int(row["epoch"]))
               for row in history for key, value in row.items() if math.isfinite(value)]
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
    write_card(weights_dir, card)  # the logged card names its run
    for name in (card.weights_file, f"{card.name}.json"):
        client.log_artifact(run_id, str(Path(weights_dir) / name), artifact_path="weights")
    client.set_terminated(run_id)
    return card
