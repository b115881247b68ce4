"""`--resume`: a search whose driver was SIGKILLed continues without re-running finished trials and without
duplicate MLflow runs. The search runs in a subprocess (its own local Ray) so the test can kill it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from search.errors import SearchError
from conftest import migrated_store
from test_search_tuner import mlflow_runs, pickle_by_value, scripted_fold

TESTS_DIR = Path(__file__).resolve().parent
EPOCHS = 3
KILL_WAIT_S = 180  # bound on waiting for the subprocess to finish two trials


def start_search(out_dir: Path, log_dir: Path) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import ray
        ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
        import test_search_tuner as scripted
        scripted.pickle_by_value()
        from search.settings import SearchSettings
        from search.tuner import run_search
        data = scripted.ScriptedData({{1e-4: 0.6, 2e-4: 0.7}}, sleep_s=0.7, log_dir={str(log_dir)!r})
        run_search(SearchSettings(name="killed", n_folds=2, scheduler="fifo", max_concurrent=1), data=data,
                   space=scripted.scripted_space([1e-4, 2e-4], epochs={EPOCHS}), out_dir={str(out_dir)!r},
                   trainable=scripted.scripted_fold)
    """)
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="1")  # save Tune's experiment state every second
    return subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the driver and every process of its session (its local Ray), by their ids."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    listing = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        pid, sid = (int(field) for field in line.split())
        if sid == process.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def saved_trial_statuses(out_dir: Path) -> dict[str, str]:
    """{trial key ("<config_id>/<fold>"): status} from Tune's saved experiment state, the file a resume reads;
    empty while none is saved (or while a copy is half-written)."""
    statuses: dict[str, str] = {}
    for path in (out_dir / "killed" / "tune").glob("experiment_state-*.json"):
        try:
            trials = [json.loads(state) for state, _ in json.loads(path.read_text())["trial_data"]]
        except (OSError, ValueError, KeyError):
            return {}
        statuses.update({f"{trial['config']['trial_config']['config_id']}/{trial['config']['trial_config']['fold']}":
                         trial.get("status") for trial in trials})
    return statuses


def saved_terminated_trials(out_dir: Path) -> set[str]:
    return {key for key, status in saved_trial_statuses(out_dir).items() if status == "TERMINATED"}


def finished_runs(out_dir: Path) -> set[str]:
    runs_file = out_dir / "killed" / "mlflow_runs.json"
    if not runs_file.is_file():
        return set()
    runs = json.loads(runs_file.read_text())
    client, _ = mlflow_runs(runs["tracking_uri"], "killed")
    return {key for key, run_id in runs["trials"].items() if client.get_run(run_id).info.status == "FINISHED"}


@pytest.mark.slow
def test_resume_after_sigkill_reruns_nothing_finished_and_duplicates_no_run(ray_local, tmp_path):
    from search.tuner import resume_search, unfinished_trial_configs

    out_dir, log_dir = tmp_path / "out", tmp_path / "log"
    log_dir.mkdir()
    migrated_store(out_dir / "mlflow.db")
    process = start_search(out_dir, log_dir)
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        # Killed once Tune's saved state knows every trial MLflow saw finish (two at least): a trial that
        # finished after the last save would be run again by design, which is not what this test is about.
        # The next trial cannot finish within the moment between this check and the kill (it takes
        # EPOCHS x 0.7 s).
        while not (len(finished := finished_runs(out_dir)) >= 2 and finished <= saved_terminated_trials(out_dir)):
            assert process.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials finished and were saved in time"
            time.sleep(0.2)
    finally:
        kill_session(process)
    done_before_kill = finished_runs(out_dir)
    starts_before = (log_dir / "starts.txt").read_text().splitlines()
    assert 2 <= len(done_before_kill) < 4

    # What a resume shares small feature caches for (search/feature_share.py): the trials left to run.
    left = {f"{config['config_id']}/{config['fold']}" for config in
            unfinished_trial_configs(str(out_dir / "killed" / "tune"))}
    assert left and left == {key for key, status in saved_trial_statuses(out_dir).items() if status != "TERMINATED"}

    pickle_by_value()
    resume_search("killed", out_dir, trainable=scripted_fold)

    starts_after = (log_dir / "starts.txt").read_text().splitlines()[len(starts_before):]
    restarted = {line.split()[0].replace("-", "/") for line in starts_after}
    assert restarted and not restarted & done_before_kill  # finished trials were not run again
    trials = pd.read_csv(out_dir / "killed" / "trials.csv", dtype={"config_id": str})
    assert len(trials) == 4 and (trials["status"] == "TERMINATED").all()
    assert (trials["epochs_done"] == EPOCHS).all()

    runs = json.loads((out_dir / "killed" / "mlflow_runs.json").read_text())
    client, all_runs = mlflow_runs(runs["tracking_uri"], "killed")
    kinds = pd.Series([run.data.tags.get("cxrtune.kind") for run in all_runs]).value_counts().to_dict()
    assert kinds == {"search": 1, "config": 2, "fold": 4}  # exactly one run per trial, none duplicated
    keys = [run.data.tags["cxrtune.trial_key"] for run in all_runs if run.data.tags.get("cxrtune.kind") == "fold"]
    assert sorted(keys) == sorted(runs["trials"])
    for run_id in runs["trials"].values():
        steps = sorted(metric.step for metric in client.get_metric_history(run_id, "val_auc"))
        assert steps == list(range(1, EPOCHS + 1))  # no epoch logged twice
        assert client.get_run(run_id).info.status == "FINISHED"
    for run_id in runs["configs"].values():
        assert client.get_run(run_id).data.metrics["n_folds_done"] == 2
    assert client.get_run(runs["parent_run_id"]).info.status == "FINISHED"


def test_resume_of_an_unknown_search_lists_the_known_ones(tmp_path):
    from search.tuner import resume_search

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "search.json").write_text("{}")
    with pytest.raises(SearchError, match="no search 'nope' to resume.*other"):
        resume_search("nope", tmp_path)
