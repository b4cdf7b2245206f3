"""A run folder's episode records: `results.json`, one JSON list rewritten atomically after every episode.

    store = ResultsStore.open(Path("outputs/eval"), run={"policy": "expert", ...})
    store.add(record)            # on disk before it returns: an interrupted run keeps every finished episode
    store.records                # every record so far, this run's and earlier runs' in the same folder

The list is written to a temporary file and renamed over `results.json` (atomic on POSIX), so a Ctrl-C or a
crash leaves the previous complete list, never half a file. `run.json` beside it holds the settings that decide
an episode's outcome; reopening a folder with other settings is refused (a resumed grid must not mix two
controllers' episodes). A setting the folder lacks counts as its default (`defaults`): a field added to the config
since the folder was written, left at its default, changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"


def write_json_atomic(path: Path, data: Any) -> Path:
    """`data` as JSON at `path`, complete or not at all: written beside it, flushed to disk, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable {what} ({exc}); move it away or pick another --out.") from None


@dataclass
class ResultsStore:
    folder: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / RESULTS_FILE

    @classmethod
    def open(cls, folder: Path, run: dict[str, Any], defaults: dict[str, Any] | None = None) -> ResultsStore:
        """The store of `folder` (created empty, or resumed when it holds a run of the same `run` settings)."""
        run, defaults = (json.loads(json.dumps(d or {}, default=str)) for d in (run, defaults))  # as on disk
        run_file = folder / RUN_FILE
        if run_file.exists():
            before = _read_json(run_file, "run settings")
            if not isinstance(before, dict):
                raise ValueError(f"{run_file} is not a settings object; move it away or pick another --out.")
            # Over today's settings: one the folder has and the config no longer knows decides nothing now.
            changed = sorted(k for k in run if before.get(k, defaults.get(k)) != run[k])
            if changed:
                shown = ", ".join(f"{k}: {before.get(k)!r} -> {run.get(k)!r}" for k in changed[:3])
                raise ValueError(f"--out {folder} holds a run with other settings ({shown}); pick another --out "
                                 "to keep both, or delete it to start over.")
        records: list[dict[str, Any]] = []
        results = folder / RESULTS_FILE
        if results.exists():
            records = _read_json(results, "results")
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError(f"{results} is not a list of episode records; move it away or pick another --out.")
        write_json_atomic(run_file, run)  # also fails now, not after the first episode, on a read-only folder
        store = cls(folder, records)
        write_json_atomic(store.path, store.records)
        return store

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        write_json_atomic(self.path, self.records)
