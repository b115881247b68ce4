"""When the MLflow server goes away mid-search: keep training, keep what could not be logged, replay it later.

A search may run for days; an MLflow server restarted for maintenance must not cost its GPU hours, and
must not leave holes in the runs either. So the driver's MLflow client is wrapped: each write (create a
run, log a batch, set a tag or a status) goes to the server, or, when the server cannot be reached, is
appended to NAME/mlflow_outbox.jsonl in call order. A run created while the server is away gets a
placeholder id ("outbox-..."), used by every later call on it and replaced by the real id at replay.
While the outbox is not empty, writes queue behind it (order matters: a run must exist before its
metrics); every RETRY_S seconds the wrapper tries to replay it, so a server that comes back during the
search catches up by itself. Otherwise `cxrtune replay-mlflow NAME` replays it after the search.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

OUTBOX_FILE = "mlflow_outbox.jsonl"
IDS_FILE = "mlflow_outbox_ids.json"  # placeholder id -> the real run id, once replayed
PLACEHOLDER_PREFIX = "outbox-"
RETRY_S = 60.0  # seconds between replay attempts while the server is away
WRITES = ("create_run", "log_batch", "log_metric", "log_param", "set_tag", "update_run", "set_terminated")
ENTITIES = ("Metric", "Param", "RunTag")

logger = logging.getLogger(__name__)


class OutboxClient:
    """An MlflowClient whose writes fall back to an outbox file when the server cannot be reached."""

    def __init__(self, client, search_dir: Path):
        self._client = client
        self._dir = Path(search_dir)
        self._retry_at = 0.0  # monotonic time of the next replay attempt while the outbox is not empty

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if name in WRITES:
            return lambda *args, **kwargs: self._write(name, args, kwargs)

        def read(*args, **kwargs):
            return method(*_translate(args, self._ids()), **_translate(kwargs, self._ids()))
        return read

    @property
    def outbox(self) -> Path:
        return self._dir / OUTBOX_FILE

    def _write(self, name: str, args: tuple, kwargs: dict):
        if self.outbox.is_file():
            if time.monotonic() < self._retry_at or not self.replay():
                return self._queue(name, args, kwargs)
        try:
            return getattr(self._client, name)(*_translate(args, self._ids()), **_translate(kwargs, self._ids()))
        except Exception as error:  # the server is down, restarting or unreachable
            logger.warning("MLflow server unreachable (%s: %s); the search goes on and keeps what it could "
                           "not log in %s (replayed when the server is back, or run `cxrtune replay-mlflow`)",
                           name, _first_line(error), self.outbox)
            self._retry_at = time.monotonic() + RETRY_S
            return self._queue(name, args, kwargs)

    def _queue(self, name: str, args: tuple, kwargs: dict):
        result = None
        if name == "create_run":
            placeholder = PLACEHOLDER_PREFIX + uuid.uuid4().hex
            kwargs = {**kwargs, "_placeholder": placeholder}
            result = SimpleNamespace(info=SimpleNamespace(run_id=placeholder))
        line = json.dumps({"call": name, "args": _encode(list(args)), "kwargs": _encode(kwargs)})
        with self.outbox.open("a") as stream:
            stream.write(line + "\n")
            stream.flush()
        return result

    def replay(self) -> bool:
        """Send the outbox in order; True when it is empty afterwards. Stops at the first failure."""
        if not self.outbox.is_file():
            return True
        lines = [line for line in self.outbox.read_text().splitlines() if line.strip()]
        ids = self._ids()
        sent = 0
        try:
            for line in lines:
                entry = json.loads(line)
                kwargs = _decode(entry["kwargs"])
                placeholder = kwargs.pop("_placeholder", None)
                result = getattr(self._client, entry["call"])(*_translate(_decode(entry["args"]), ids),
                                                              **_translate(kwargs, ids))
                if placeholder:
                    ids[placeholder] = result.info.run_id
                    _write_json(self._dir / IDS_FILE, ids)
                sent += 1
        except Exception as error:
            self._retry_at = time.monotonic() + RETRY_S
            logger.warning("MLflow replay stopped after %d of %d calls: %s", sent, len(lines), _first_line(error))
            _write_text(self.outbox, "".join(line + "\n" for line in lines[sent:]))
            return False
        self.outbox.unlink()
        _replace_placeholders(self._dir, ids)
        logger.warning("MLflow: replayed %d call(s) kept while the server was away", sent)
        return True

    def _ids(self) -> dict[str, str]:
        path = self._dir / IDS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}


def replay_outbox(search_dir: Path, tracking_uri: str) -> int:
    """Replay a search's outbox (the `cxrtune replay-mlflow` command); returns the calls still kept (0: done)."""
    from mlflow.tracking import MlflowClient

    client = OutboxClient(MlflowClient(tracking_uri), search_dir)
    client.replay()
    if not client.outbox.is_file():
        return 0
    return len([line for line in client.outbox.read_text().splitlines() if line.strip()])


def _replace_placeholders(search_dir: Path, ids: dict[str, str]) -> None:
    """mlflow_runs.json with real run ids, so that report, pareto and train-final find the runs."""
    path = search_dir / "mlflow_runs.json"
    if ids and path.is_file():
        _write_text(path, json.dumps(_translate(json.loads(path.read_text()), ids), indent=1, sort_keys=True))


def _translate(value, ids: dict[str, str]):
    """Placeholders replaced by real run ids, at any depth (tags hold the parent's id)."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, (list, tuple)):
        return type(value)(_translate(item, ids) for item in value)
    if isinstance(value, dict):
        return {key: _translate(item, ids) for key, item in value.items()}
    return value


def _encode(value):
    """JSON for call arguments; MLflow's Metric/Param/RunTag entities kept with their class name."""
    if type(value).__name__ in ENTITIES:
        return {"__entity__": type(value).__name__, **{key.lstrip("_"): item for key, item in vars(value).items()}}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode(value):
    if isinstance(value, dict) and "__entity__" in value:
        import mlflow.entities

        fields = dict(value)
        entity = getattr(mlflow.entities, fields.pop("__entity__"))
        if entity.__name__ == "Metric":
            return entity(fields["key"], fields["value"], fields["timestamp"], fields["step"])
        return entity(fields["key"], fields["value"])
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    return value


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _write_json(path: Path, body: Any) -> None:
    _write_text(path, json.dumps(body, indent=1, sort_keys=True))


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
