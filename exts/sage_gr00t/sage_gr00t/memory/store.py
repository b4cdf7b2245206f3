"""Where salient experience lives: a bounded in-memory buffer and a crash-safe SQLite store.

`SalienceBuffer` is the working memory sleep replays from. It holds at most `capacity`
experiences whose SNARC total passed `threshold`; when full, the LEAST SALIENT experience is
evicted (the oldest one among equal salience), and a newcomer less salient than everything held is
dropped. Why not plain FIFO: at 20 Hz a FIFO of 1000 forgets a rare failure within a minute of
routine motion, and rare failures are what sleep most needs to replay.

`ExperienceStore` is long-term memory: SQLite (stdlib, WAL journal) with an `episodes` and an
`experiences` table; arrays (states, actions, images, trajectories) are stored as
`np.savez_compressed` BLOBs. A `dreams` table keeps every dream attempt's provenance (source episodes,
transforms, randomization seed, success, thumbnail): one transaction per `add_dreams` call, so a process
killed during a sleep cycle leaves each batch of dreams either wholly stored or absent; it is added to older
stores of this schema when they are opened (older readers ignore it).

Durability contract: one transaction per episode. `begin_episode` commits only an `in_progress`
marker; `add` / `append_step` buffer in RAM; `end_episode` writes the experiences, the trajectory and
the final status in one transaction. If the process dies (even SIGKILL) everything committed survives
and the episode in flight is lost; on the next open its marker is set to `incomplete` (it has no
experience rows, so queries never see half an episode). One writer per database file is assumed;
a marker whose writer process is still alive on this host is left alone so a reader opening the file
does not break a live writer.

The file is identified before anything is written to it (not even the WAL switch): a read-only
connection reads the header's `application_id` (`APPLICATION_ID`, "SGEX") and `user_version`
(`SCHEMA_VERSION`) and the table list. A missing or empty file is initialised; a store of this
schema opens; a store written before the marker existed (application_id 0, only this store's tables
and columns) is stamped and opens; anything else -- another program's database, a newer schema, a
file that is not SQLite -- raises `StoreFormatError` naming the path and what was found, and the file
is left byte-for-byte as it was.
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sage_gr00t.memory.snarc import Experience, SNARCScores

SCHEMA_VERSION = 1
APPLICATION_ID = 0x53474558  # b"SGEX" (SaGe EXperience store), SQLite header offset 68
_SQLITE_MAGIC = b"SQLite format 3\x00"
STATUS_IN_PROGRESS, STATUS_COMPLETE, STATUS_INCOMPLETE = "in_progress", "complete", "incomplete"


# ---------------------------------------------------------------------------------------------
# In-memory working memory
# ---------------------------------------------------------------------------------------------
@dataclass
class BufferConfig:
    capacity: int = 2048
    threshold: float = 0.12  # SNARC total needed to enter (same default as SNARCConfig.threshold)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be >= 1.")


@dataclass(order=True)
class _Slot:
    salience: float
    seq: int  # insertion order: among equal salience the older slot is smaller, evicted first
    experience: Experience = field(compare=False)
    consolidated: bool = field(default=False, compare=False)


class SalienceBuffer:
    """Bounded buffer of salient experiences; evicts the least salient (oldest on ties)."""

    def __init__(self, config: BufferConfig | None = None) -> None:
        self.config = config or BufferConfig()
        self._heap: list[_Slot] = []  # min-heap on (salience, seq): the eviction candidate is [0]
        self._seq = itertools.count()
        self.n_offered = self.n_rejected = self.n_evicted = 0

    def offer(self, exp: Experience) -> bool:
        """Add `exp` (must carry `scores`) if salient enough and room can be made; returns admitted."""
        if exp.scores is None:
            raise ValueError("Experience has no SNARC scores; use SNARCScorer.annotate first.")
        self.n_offered += 1
        sal = exp.scores.total
        if sal < self.config.threshold:
            self.n_rejected += 1
            return False
        slot = _Slot(sal, next(self._seq), exp)
        if len(self._heap) < self.config.capacity:
            heapq.heappush(self._heap, slot)
            return True
        if sal < self._heap[0].salience:
            self.n_rejected += 1  # less salient than everything held (a tie replaces the older one)
            return False
        heapq.heapreplace(self._heap, slot)
        self.n_evicted += 1
        return True

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.items())

    def items(self) -> list[Experience]:
        """Most salient first (newest first among equal salience)."""
        return [s.experience for s in sorted(self._heap, key=lambda s: (-s.salience, -s.seq))]

    @property
    def n_unconsolidated(self) -> int:
        return sum(not s.consolidated for s in self._heap)

    def pending(self) -> list[Experience]:
        """Salient experiences sleep has not consolidated yet, most salient first."""
        slots = sorted((s for s in self._heap if not s.consolidated), key=lambda s: (-s.salience, -s.seq))
        return [s.experience for s in slots]

    def mark_consolidated(self) -> int:
        """Mark everything held as consolidated (after a sleep cycle); returns how many were new."""
        n = 0
        for s in self._heap:
            n += not s.consolidated
            s.consolidated = True
        return n

    def sample(self, n: int, rng: np.random.Generator) -> list[Experience]:
        """Salience-proportional sample with replacement (prioritized replay)."""
        if not self._heap or n <= 0:
            return []
        p = np.array([s.salience for s in self._heap]) + 1e-9
        idx = rng.choice(len(self._heap), size=n, p=p / p.sum())
        return [self._heap[i].experience for i in idx]

    def clear(self) -> None:
        self._heap.clear()


# ---------------------------------------------------------------------------------------------
# Persistent store
# ---------------------------------------------------------------------------------------------
def pack_arrays(arrays: Mapping[str, Any]) -> bytes:
    """Compressed npz of named arrays (no pickles: object arrays are refused)."""
    buf = io.BytesIO()
    clean = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    for k, v in clean.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only numeric/bool/str arrays are stored")
    np.savez_compressed(buf, **clean)
    return buf.getvalue()


def unpack_arrays(blob: bytes | None) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class StoreConfig:
    synchronous: str = "FULL"  # FULL: a committed episode survives power loss too (1 fsync/episode)
    busy_timeout_ms: int = 5000
    recover_on_open: bool = True


@dataclass
class EpisodeRecord:
    id: int
    task: str
    status: str
    success: bool | None
    n_steps: int
    n_experiences: int
    total_reward: float
    max_salience: float
    started_at: float
    ended_at: float | None
    has_trajectory: bool
    meta: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    success INTEGER,
    n_steps INTEGER NOT NULL DEFAULT 0,
    n_experiences INTEGER NOT NULL DEFAULT 0,
    total_reward REAL NOT NULL DEFAULT 0,
    max_salience REAL NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    ended_at REAL,
    writer_pid INTEGER,
    writer_host TEXT,
    trajectory BLOB
);
CREATE TABLE IF NOT EXISTS experiences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    task TEXT NOT NULL,
    subtask TEXT NOT NULL,
    reward REAL NOT NULL,
    progress REAL,
    sensor_disagreement REAL NOT NULL,
    safety_intervention INTEGER NOT NULL,
    success INTEGER,
    salience REAL NOT NULL,
    surprise REAL, novelty REAL, arousal REAL, reward_score REAL, conflict REAL,
    arrays BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dreams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    success INTEGER NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    cycle INTEGER,
    sources TEXT NOT NULL DEFAULT '[]',
    provenance TEXT NOT NULL DEFAULT '{}',
    thumbnail BLOB,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dream_task ON dreams(task, success);
CREATE INDEX IF NOT EXISTS idx_exp_salience ON experiences(salience DESC);
CREATE INDEX IF NOT EXISTS idx_exp_episode ON experiences(episode_id);
CREATE INDEX IF NOT EXISTS idx_episode_task ON episodes(task, status);
"""
_TABLES = ("episodes", "experiences", "dreams")
_INDEXES = ("idx_exp_salience", "idx_exp_episode", "idx_episode_task", "idx_dream_task")
# Added to a store of this schema version that predates it, at open (CREATE ... IF NOT EXISTS).
_ADDITIVE = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS dreams"):
                    _SCHEMA.index("CREATE INDEX IF NOT EXISTS idx_exp")]


class StoreFormatError(RuntimeError):
    """The file is not an experience store this code can open (foreign database, newer schema, not SQLite)."""


def _schema_columns() -> dict[str, set[str]]:
    """Column names of this store's tables, read off `_SCHEMA` (in an in-memory database)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in _TABLES}
    finally:
        db.close()


_COLUMNS = _schema_columns()


def inspect_store_file(path: Path) -> str:
    """Identify `path` without writing to it: "new" (missing/empty), "current" (this schema) or "legacy"
    (a store written before the application_id marker). Raises StoreFormatError for anything else."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0 and not _side_files(path)):
        return "new"
    if not path.is_file():
        raise StoreFormatError(f"Experience store path {path} exists but is not a regular file.")
    with path.open("rb") as f:
        magic = f.read(len(_SQLITE_MAGIC))
    if magic != _SQLITE_MAGIC and path.stat().st_size > 0:
        raise StoreFormatError(f"Refusing to open {path} as the experience store: it is not a SQLite database "
                               f"(starts with {magic[:16]!r}). The file was left untouched; pass a new path.")
    try:
        # Without a -wal/-journal next to it the file alone is the whole database: immutable=1 reads it
        # with no locks and no side files (a read-only WAL connection would create -wal/-shm). With one
        # (a live writer, or a killed one), mode=ro reads through it like any reader, writing nothing.
        mode = "mode=ro" if _side_files(path) else "mode=ro&immutable=1"
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
        try:
            app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            objects = {name: kind for name, kind in db.execute(
                "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
            columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in _TABLES if t in objects}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreFormatError(f"Refusing to open {path} as the experience store: SQLite cannot read it "
                               f"({exc}). The file was left untouched.") from exc
    found = (f"application_id {app_id:#x}, user_version {version}, "
             f"{len(objects)} schema objects{': ' + ', '.join(sorted(objects)[:8]) if objects else ''}"
             f"{' ...' if len(objects) > 8 else ''}")
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreFormatError(f"Refusing to open {path}: it is an experience store of schema version {version}, "
                                   f"newer than this code's {SCHEMA_VERSION} ({found}). Upgrade sage_gr00t to read it; "
                                   "the file was left untouched.")
        if version == SCHEMA_VERSION:
            return "current"
        # Older schema of this project: no migrations exist yet beyond re-stamping (v1 is the first).
    elif app_id != 0:
        raise StoreFormatError(f"Refusing to open {path} as the experience store: it belongs to another "
                               f"application ({found}). The file was left untouched; pass a new path.")
    if not objects and version == 0:
        return "new"  # an empty SQLite database (e.g. created by sqlite3 with no tables)
    ours = set(_TABLES) | set(_INDEXES)
    legacy = (
        set(objects) <= ours
        and "episodes" in objects
        and all(objects.get(t, "table") == "table" and _COLUMNS[t] <= columns.get(t, _COLUMNS[t]) for t in _TABLES)
        and version <= SCHEMA_VERSION
    )
    if legacy:
        return "legacy"
    if app_id == 0 and version > SCHEMA_VERSION and set(objects) <= ours:
        raise StoreFormatError(f"Refusing to open {path}: it looks like an experience store of a newer schema "
                               f"({found}; this code reads {SCHEMA_VERSION}). The file was left untouched.")
    raise StoreFormatError(f"Refusing to open {path} as the experience store: it is another database ({found}"
                           f"; expected tables {', '.join(_TABLES)}). The file was left untouched; pass a new path.")


def _side_files(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")) if p.exists()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class DreamRecord:
    """One stored dream attempt (kept or not) and where it came from."""

    id: int
    task: str
    seed: int
    success: bool
    steps: int
    cycle: int | None
    sources: list[str]
    provenance: dict[str, Any]
    created_at: float
    thumbnail: np.ndarray | None = field(default=None, repr=False)


@dataclass
class _OpenEpisode:
    experiences: list[Experience] = field(default_factory=list)
    steps: dict[str, list[np.ndarray]] = field(default_factory=dict)


class ExperienceStore:
    """SQLite long-term memory; one transaction per episode (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.opened_as = inspect_store_file(self.path)  # raises before anything touches a foreign file
        # Autocommit mode: transactions are opened explicitly so their extent is exactly one episode.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=self.config.busy_timeout_ms / 1000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={self.config.synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        if self.opened_as != "current":  # new file or pre-marker store: schema + marker in one transaction
            self._db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA application_id={APPLICATION_ID};"
                f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        elif self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'dreams'").fetchone() is None:
            self._db.executescript(f"BEGIN IMMEDIATE; {_ADDITIVE} COMMIT;")
        self._open: dict[int, _OpenEpisode] = {}
        self._host = socket.gethostname()
        self.recovered: list[int] = self._recover() if self.config.recover_on_open else []

    # ------------------------------------------------------------------ lifecycle
    def _recover(self) -> list[int]:
        """Mark episodes whose writer died mid-episode as incomplete; returns their ids."""
        rows = self._db.execute(
            "SELECT id, writer_pid, writer_host FROM episodes WHERE status = ?", (STATUS_IN_PROGRESS,)
        ).fetchall()
        dead = [eid for eid, pid, host in rows if not (host == self._host and pid is not None and _pid_alive(int(pid)))]
        if dead:
            self._db.executemany(
                "UPDATE episodes SET status = ?, ended_at = ? WHERE id = ? AND status = ?",
                [(STATUS_INCOMPLETE, time.time(), eid, STATUS_IN_PROGRESS) for eid in dead],
            )
        return dead

    def close(self) -> None:
        for eid in list(self._open):
            self.abort_episode(eid)
        self._db.close()

    def __enter__(self) -> ExperienceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def begin_episode(self, meta: Mapping[str, Any] | None = None, task: str | None = None) -> int:
        meta = dict(meta or {})
        task = task if task is not None else str(meta.get("task", ""))
        cur = self._db.execute(
            "INSERT INTO episodes (task, meta, status, started_at, writer_pid, writer_host) VALUES (?,?,?,?,?,?)",
            (task, json.dumps(meta, default=str), STATUS_IN_PROGRESS, time.time(), os.getpid(), self._host),
        )
        eid = int(cur.lastrowid or 0)
        self._open[eid] = _OpenEpisode()
        return eid

    def _episode(self, episode_id: int | None) -> _OpenEpisode:
        if episode_id is None or episode_id not in self._open:
            raise KeyError(f"Episode {episode_id} is not open in this store (begin_episode first).")
        return self._open[episode_id]

    def add(self, exp: Experience) -> None:
        """Buffer an experience of an open episode; written at `end_episode`."""
        self._episode(exp.episode_id).experiences.append(exp)

    def append_step(self, episode_id: int, **arrays: Any) -> None:
        """Buffer one step of the episode trajectory (e.g. state=, action=, image=); stacked at the end."""
        steps = self._episode(episode_id).steps
        if steps and set(arrays) != set(steps):
            raise ValueError(f"append_step keys {sorted(arrays)} differ from earlier steps {sorted(steps)}")
        for k, v in arrays.items():
            steps.setdefault(k, []).append(np.asarray(v))

    def abort_episode(self, episode_id: int) -> None:
        """Drop an open episode's buffered data and mark it incomplete."""
        self._open.pop(episode_id, None)
        self._db.execute(
            "UPDATE episodes SET status = ?, ended_at = ? WHERE id = ? AND status = ?",
            (STATUS_INCOMPLETE, time.time(), episode_id, STATUS_IN_PROGRESS),
        )

    def end_episode(
        self,
        episode_id: int,
        success: bool | None,
        trajectory: Mapping[str, np.ndarray] | None = None,
        n_steps: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> EpisodeRecord:
        """Commit the episode: experiences, trajectory (appended steps + `trajectory`) and summary."""
        ep = self._episode(episode_id)
        traj: dict[str, np.ndarray] = {k: np.stack(v) for k, v in ep.steps.items()}
        traj.update({k: np.asarray(v) for k, v in (trajectory or {}).items()})
        if n_steps is None:
            n_steps = max((len(v) for v in traj.values()), default=len(ep.experiences))
        rows = [self._experience_row(episode_id, e) for e in ep.experiences]
        total_reward = float(sum(e.reward for e in ep.experiences))
        max_sal = max((e.salience for e in ep.experiences), default=0.0)
        traj_blob = pack_arrays(traj) if traj else None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO experiences (episode_id, step, task, subtask, reward, progress, sensor_disagreement,"
                " safety_intervention, success, salience, surprise, novelty, arousal, reward_score, conflict,"
                " arrays) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            params: list[Any] = [STATUS_COMPLETE, None if success is None else int(success), int(n_steps), len(rows)]
            params += [total_reward, max_sal, time.time(), traj_blob]
            sql = (
                "UPDATE episodes SET status=?, success=?, n_steps=?, n_experiences=?, total_reward=?,"
                " max_salience=?, ended_at=?, trajectory=?"
            )
            if meta:
                old = json.loads(self._db.execute("SELECT meta FROM episodes WHERE id=?", (episode_id,)).fetchone()[0])
                sql += ", meta=?"
                params.append(json.dumps({**old, **meta}, default=str))
            cur = self._db.execute(sql + " WHERE id=? AND status=?", [*params, episode_id, STATUS_IN_PROGRESS])
            if cur.rowcount != 1:
                raise RuntimeError(f"Episode {episode_id} is no longer in progress (recovered by another opener?)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        del self._open[episode_id]
        return self.episode(episode_id)

    @staticmethod
    def _experience_row(episode_id: int, e: Experience) -> tuple[Any, ...]:
        arrays: dict[str, Any] = {"state": e.state, "action": e.action}
        for name in ("predicted", "observed", "prev_action"):
            if getattr(e, name) is not None:
                arrays[name] = np.atleast_1d(np.asarray(getattr(e, name)))
        for k, v in (e.trajectory or {}).items():
            arrays[f"traj/{k}"] = v
        s = e.scores
        comps = (s.surprise, s.novelty, s.arousal, s.reward, s.conflict) if s else (None,) * 5
        return (
            episode_id, int(e.step), e.task, e.subtask, float(e.reward), e.progress, float(e.sensor_disagreement),
            int(e.safety_intervention), None if e.success is None else int(e.success), e.salience, *comps,
            pack_arrays(arrays),
        )  # fmt: skip

    # ------------------------------------------------------------------ reading
    _EXP_COLS = (
        "x.episode_id, x.step, x.task, x.subtask, x.reward, x.progress, x.sensor_disagreement,"
        " x.safety_intervention, x.success, x.salience, x.surprise, x.novelty, x.arousal, x.reward_score,"
        " x.conflict, x.arrays"
    )

    @staticmethod
    def _row_to_experience(row: tuple[Any, ...]) -> Experience:
        (eid, step, task, subtask, reward, progress, dis, safety, success, sal, *comps, blob) = row
        arrays = unpack_arrays(blob)
        traj = {k.removeprefix("traj/"): v for k, v in arrays.items() if k.startswith("traj/")}
        scores = SNARCScores(*comps, total=sal) if comps[0] is not None else None
        return Experience(
            episode_id=eid, step=step, task=task, subtask=subtask, state=arrays["state"], action=arrays["action"],
            reward=reward, progress=progress, predicted=arrays.get("predicted"), observed=arrays.get("observed"),
            prev_action=arrays.get("prev_action"), sensor_disagreement=dis, safety_intervention=bool(safety),
            success=None if success is None else bool(success), trajectory=traj or None, scores=scores,
        )  # fmt: skip

    def query(
        self,
        n: int | None = None,
        task: str | None = None,
        success: bool | None = None,
        min_salience: float | None = None,
        episode_id: int | None = None,
        order: str = "salience",
    ) -> list[Experience]:
        """Experiences of completed episodes. `success` filters on the EPISODE's outcome;
        `task` matches exactly; order is "salience" (most salient first) or "time" (oldest first)."""
        where, params = ["e.status = ?"], [STATUS_COMPLETE]
        if task is not None:
            where.append("x.task = ?")
            params.append(task)
        if success is not None:
            where.append("e.success = ?")
            params.append(int(success))
        if min_salience is not None:
            where.append("x.salience >= ?")
            params.append(min_salience)
        if episode_id is not None:
            where.append("x.episode_id = ?")
            params.append(episode_id)
        orders = {"salience": "x.salience DESC, x.id DESC", "time": "x.id ASC"}
        if order not in orders:
            raise ValueError(f"order must be one of {sorted(orders)}")
        sql = (
            f"SELECT {self._EXP_COLS} FROM experiences x JOIN episodes e ON e.id = x.episode_id"
            f" WHERE {' AND '.join(where)} ORDER BY {orders[order]}"
        )
        if n is not None:
            sql += " LIMIT ?"
            params.append(int(n))
        return [self._row_to_experience(r) for r in self._db.execute(sql, params)]

    _EP_COLS = (
        "id, task, status, success, n_steps, n_experiences, total_reward, max_salience, started_at, ended_at,"
        " trajectory IS NOT NULL, meta"
    )

    @staticmethod
    def _row_to_episode(r: tuple[Any, ...]) -> EpisodeRecord:
        return EpisodeRecord(
            id=r[0], task=r[1], status=r[2], success=None if r[3] is None else bool(r[3]), n_steps=r[4],
            n_experiences=r[5], total_reward=r[6], max_salience=r[7], started_at=r[8], ended_at=r[9],
            has_trajectory=bool(r[10]), meta=json.loads(r[11]),
        )  # fmt: skip

    def episode(self, episode_id: int) -> EpisodeRecord:
        row = self._db.execute(f"SELECT {self._EP_COLS} FROM episodes WHERE id=?", (episode_id,)).fetchone()
        if row is None:
            raise KeyError(f"No episode {episode_id}.")
        return self._row_to_episode(row)

    def episodes(
        self, task: str | None = None, success: bool | None = None, status: str | None = STATUS_COMPLETE
    ) -> list[EpisodeRecord]:
        """Episodes in id order; status=None lists every status (complete, incomplete, in_progress)."""
        where, params = ["1"], []
        for col, val in (("task", task), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if success is not None:
            where.append("success = ?")
            params.append(int(success))
        sql = f"SELECT {self._EP_COLS} FROM episodes WHERE {' AND '.join(where)} ORDER BY id"
        return [self._row_to_episode(r) for r in self._db.execute(sql, params)]

    def load_trajectory(self, episode_id: int) -> dict[str, np.ndarray]:
        """The committed trajectory of a complete episode ({} if it had none)."""
        row = self._db.execute("SELECT status, trajectory FROM episodes WHERE id=?", (episode_id,)).fetchone()
        if row is None:
            raise KeyError(f"No episode {episode_id}.")
        if row[0] != STATUS_COMPLETE:
            raise KeyError(f"Episode {episode_id} is {row[0]}, not complete.")
        return unpack_arrays(row[1])

    # ------------------------------------------------------------------ dreams
    def add_dreams(self, dreams: list[Mapping[str, Any]], cycle: int | None = None) -> list[int]:
        """Store dream attempts in ONE transaction; each a mapping with `task`, `seed`, `success`, `steps`,
        `provenance` (JSON-able; its `source_episodes` become `sources`) and optionally `thumbnail` (array)."""
        rows = []
        now = time.time()
        for d in dreams:
            provenance = dict(d.get("provenance", {}))
            thumb = d.get("thumbnail")
            rows.append((str(d["task"]), int(d["seed"]), int(bool(d["success"])), int(d.get("steps", 0)), cycle,
                         json.dumps([str(s) for s in provenance.get("source_episodes", [])]),
                         json.dumps(provenance, default=str),
                         pack_arrays({"thumbnail": thumb}) if thumb is not None else None, now))
        ids = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cur = self._db.execute(
                    "INSERT INTO dreams (task, seed, success, steps, cycle, sources, provenance, thumbnail,"
                    " created_at) VALUES (?,?,?,?,?,?,?,?,?)", row)
                ids.append(int(cur.lastrowid or 0))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return ids

    def dreams(self, task: str | None = None, success: bool | None = None, limit: int | None = None,
               thumbnails: bool = True) -> list[DreamRecord]:
        """Stored dream attempts, newest first."""
        where, params = ["1"], []
        if task is not None:
            where.append("task = ?")
            params.append(task)
        if success is not None:
            where.append("success = ?")
            params.append(int(success))
        thumb = "thumbnail" if thumbnails else "NULL"
        sql = (f"SELECT id, task, seed, success, steps, cycle, sources, provenance, created_at, {thumb} FROM dreams"
               f" WHERE {' AND '.join(where)} ORDER BY id DESC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        out = []
        for r in self._db.execute(sql, params):
            out.append(DreamRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5], json.loads(r[6]), json.loads(r[7]), r[8],
                                   unpack_arrays(r[9]).get("thumbnail") if r[9] else None))
        return out

    def dream_stats(self) -> dict[str, dict[str, int]]:
        """{task: {"kept": n, "attempted": n}} over every stored dream attempt."""
        rows = self._db.execute("SELECT task, COALESCE(SUM(success), 0), COUNT(*) FROM dreams GROUP BY task")
        return {task: {"kept": int(kept), "attempted": int(n)} for task, kept, n in rows}

    def stats(self) -> dict[str, Any]:
        by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM episodes GROUP BY status").fetchall())
        n_complete, n_success = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(success = 1), 0) FROM episodes WHERE status = ?", (STATUS_COMPLETE,)
        ).fetchone()
        n_exp, mean_sal, max_sal = self._db.execute(
            "SELECT COUNT(*), AVG(salience), MAX(salience) FROM experiences"
        ).fetchone()
        by_task = dict(
            self._db.execute(
                "SELECT task, COUNT(*) FROM episodes WHERE status = ? GROUP BY task", (STATUS_COMPLETE,)
            ).fetchall()
        )
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "episodes_complete": n_complete,
            "episodes_incomplete": by_status.get(STATUS_INCOMPLETE, 0),
            "episodes_in_progress": by_status.get(STATUS_IN_PROGRESS, 0),
            "success_rate": n_success / n_complete if n_complete else None,
            "experiences": n_exp,
            "mean_salience": mean_sal,
            "max_salience": max_sal,
            "episodes_by_task": by_task,
            "open_episodes": len(self._open),
            "bytes_on_disk": size,
        }
