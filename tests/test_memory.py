"""Memory: SNARC salience, the salience buffer, the crash-safe SQLite store, metabolic states."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sage_gr00t.memory import (
    BufferConfig,
    Experience,
    ExperienceStore,
    MetabolicConfig,
    MetabolicController,
    MetabolicInputs,
    MetabolicState,
    SalienceBuffer,
    SNARCConfig,
    SNARCScorer,
    SNARCScores,
    hash_text,
)
from sage_gr00t.memory.store import _SCHEMA, APPLICATION_ID, SCHEMA_VERSION, StoreFormatError

DIM = 28  # sage_humanoid: 2 x 7 arm + 2 x 7 hand joints
TASK = "pick up the red apple and place it on the plate"


def routine(rng: np.random.Generator, step: int, base: np.ndarray, episode: int = 1) -> Experience:
    """A step of a well-practised motion: small state jitter, small prediction error, smooth action."""
    state = base + rng.normal(0, 0.01, DIM)
    return Experience(
        episode_id=episode,
        step=step,
        task=TASK,
        subtask="grasp apple",
        state=state,
        action=state + 0.01,
        predicted=state,
        observed=state + rng.normal(0, 0.02, DIM),
        reward=0.0,
    )


def warmed_scorer(n: int = 40) -> tuple[SNARCScorer, np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, DIM)
    scorer = SNARCScorer()
    for t in range(n):
        scorer.score(routine(rng, t, base))
    return scorer, rng, base


# ------------------------------------------------------------------ SNARC
def test_snarc_ranks_surprising_novel_failed_above_routine() -> None:
    scorer, rng, base = warmed_scorer()
    normal = routine(rng, 40, base)
    s_routine = scorer.score(normal, update=False)
    assert s_routine.total < 0.1 and not scorer.is_salient(s_routine)

    surprising = Experience(**{**normal.__dict__, "observed": np.asarray(normal.predicted) + 0.3})
    novel = Experience(**{**normal.__dict__, "task": "pour water into the bowl", "state": base + 1.0})
    failed = Experience(**{**normal.__dict__, "success": False, "reward": -1.0})
    jerky = Experience(**{**normal.__dict__, "action": normal.action + 0.5})
    conflicted = Experience(**{**normal.__dict__, "sensor_disagreement": 1.0})
    everything = Experience(
        **{**surprising.__dict__, "task": novel.task, "state": novel.state, "success": False, "sensor_disagreement": 1}
    )
    scores = {
        name: scorer.score(e, update=False)
        for name, e in [
            ("surprising", surprising),
            ("novel", novel),
            ("failed", failed),
            ("jerky", jerky),
            ("conflicted", conflicted),
            ("everything", everything),
        ]
    }
    assert scores["surprising"].surprise > 0.9 > s_routine.surprise + 0.5
    assert scores["novel"].novelty > 0.9 > s_routine.novelty + 0.5
    assert scores["failed"].reward == 1.0 and s_routine.reward == 0.0
    assert scores["jerky"].arousal > 0.9 and scores["conflicted"].conflict > 0.9
    for name, s in scores.items():
        assert s.total > s_routine.total + 0.1, name
        assert scorer.is_salient(s), name
    assert scores["everything"].total == max(s.total for s in scores.values())


def test_novelty_decays_for_repeated_similar_experiences() -> None:
    scorer, rng = SNARCScorer(), np.random.default_rng(1)
    base = rng.normal(0, 0.3, DIM)
    novelty = [scorer.score(routine(rng, t, base)).novelty for t in range(30)]
    assert novelty[0] == 1.0
    assert novelty[1] < novelty[0] and novelty[5] < novelty[1] and novelty[-1] < 0.2
    assert scorer.n_prototypes <= 3  # similar experiences share a prototype
    other = Experience(1, 30, "sort the blocks by colour", base, base)
    assert scorer.score(other).novelty > 0.8  # a different task is still novel


def test_surprise_adapts_to_a_persistently_inaccurate_model() -> None:
    scorer = SNARCScorer()
    x = np.zeros(DIM)
    surprise = [scorer.score(Experience(1, t, TASK, x, x, predicted=x, observed=x + 0.1)).surprise for t in range(300)]
    assert surprise[0] > 0.8 and surprise[-1] < 0.05  # the running error scale caught up


def test_prototypes_and_determinism() -> None:
    cfg = SNARCConfig(max_prototypes=8)
    a, b = SNARCScorer(cfg), SNARCScorer(cfg)
    rng = np.random.default_rng(2)
    for t in range(100):
        e = Experience(t // 10, t, f"task {t % 13}", rng.normal(0, 2, DIM), rng.normal(0, 1, DIM))
        assert a.score(e) == b.score(e)
    assert a.n_prototypes == 8
    # blake2b feature hashing: identical in every process (Python's hash() is salted).
    code = "import json; from sage_gr00t.memory import hash_text; print(json.dumps(hash_text('pick it', 16).tolist()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert np.array_equal(json.loads(out), hash_text("pick it", 16))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
vec = hnp.arrays(np.float64, st.integers(1, 12), elements=finite)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(vec, vec, finite, finite, st.booleans(), st.sampled_from([None, True, False]), st.text(max_size=20)),
        min_size=1,
        max_size=8,
    )
)
def test_snarc_components_in_unit_interval(steps: list) -> None:
    scorer = SNARCScorer(SNARCConfig(max_prototypes=4))
    for t, (s, a, reward, dis, safety, success, text) in enumerate(steps):
        e = Experience(0, t, text, s, a, reward=reward, predicted=s, observed=a if a.shape == s.shape else s)
        e.sensor_disagreement, e.safety_intervention, e.success = dis, safety, success
        sc = scorer.score(e)
        values = np.array(list(sc.as_dict().values()))
        assert np.all(np.isfinite(values)) and np.all(values >= 0.0) and np.all(values <= 1.0), sc


# ------------------------------------------------------------------ salience buffer
def scored(total: float, step: int = 0) -> Experience:
    e = Experience(0, step, TASK, np.zeros(2), np.zeros(2))
    e.scores = SNARCScores(0, 0, 0, 0, 0, total=total)
    return e


def test_threshold_gates_buffer_and_pipeline() -> None:
    scorer, rng, base = warmed_scorer()
    buf = SalienceBuffer(BufferConfig(capacity=100, threshold=scorer.config.threshold))
    admitted = [buf.offer(scorer.annotate(routine(rng, 40 + t, base))) for t in range(20)]
    assert not any(admitted) and len(buf) == 0
    failure = scorer.annotate(Experience(1, 61, TASK, base, base, success=False))
    assert buf.offer(failure) and buf.items()[0] is failure and buf.n_unconsolidated == 1
    assert buf.mark_consolidated() == 1 and buf.n_unconsolidated == 0 and buf.pending() == []


def test_buffer_evicts_least_salient() -> None:
    buf = SalienceBuffer(BufferConfig(capacity=3, threshold=0.2))
    for i, s in enumerate([0.5, 0.3, 0.9, 0.3]):
        assert buf.offer(scored(s, i))
    assert [e.step for e in buf.items()] == [2, 0, 3]  # the older 0.3 went first
    assert not buf.offer(scored(0.25, 9))  # less salient than everything held
    assert buf.offer(scored(0.6, 10)) and [e.salience for e in buf.items()] == [0.9, 0.6, 0.5]
    rng = np.random.default_rng(0)
    assert len(buf.sample(50, rng)) == 50


@settings(max_examples=100, deadline=None)
@given(cap=st.integers(1, 10), totals=st.lists(st.floats(0, 1), max_size=60))
def test_buffer_never_exceeds_capacity_and_keeps_the_top(cap: int, totals: list[float]) -> None:
    buf = SalienceBuffer(BufferConfig(capacity=cap, threshold=0.3))
    for i, s in enumerate(totals):
        buf.offer(scored(s, i))
        assert len(buf) <= cap
    eligible = sorted((s for s in totals if s >= 0.3), reverse=True)[:cap]
    assert [e.salience for e in buf.items()] == eligible


# ------------------------------------------------------------------ SQLite store
def episode_arrays(k: int, n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + k)
    return {
        "state": rng.normal(size=(n, DIM)).astype(np.float32),
        "action": rng.normal(size=(n, DIM)).astype(np.float32),
        "image": rng.integers(0, 256, size=(n, 24, 32, 3), dtype=np.uint8),
    }


def test_sqlite_round_trip(tmp_path: Path) -> None:
    scorer = SNARCScorer()
    with ExperienceStore(tmp_path / "mem.db") as store:
        for k, (task, success) in enumerate([("pick", True), ("pick", False), ("pour", True)]):
            eid = store.begin_episode({"task": task, "seed": k})
            arrays = episode_arrays(k)
            for t in range(len(arrays["state"])):
                store.append_step(eid, **{name: a[t] for name, a in arrays.items()})
                if t % 10 == 0:
                    e = Experience(eid, t, task, arrays["state"][t], arrays["action"][t], reward=t / 10)
                    e.trajectory = {"image": arrays["image"][t : t + 2]}
                    e.predicted, e.observed = 0.5, 0.25
                    store.add(scorer.annotate(e))
            rec = store.end_episode(eid, success=success, meta={"note": "done"})
            assert rec.status == "complete" and rec.n_steps == 30 and rec.n_experiences == 3
            assert rec.meta == {"task": task, "seed": k, "note": "done"}
            loaded = store.load_trajectory(eid)
            assert set(loaded) == set(arrays)
            for name, a in arrays.items():
                assert loaded[name].dtype == a.dtype and np.array_equal(loaded[name], a)
    with ExperienceStore(tmp_path / "mem.db") as store:
        top = store.query(n=2)
        assert len(top) == 2 and top[0].salience >= top[1].salience
        assert top[0].scores is not None and top[0].salience == max(e.salience for e in store.query())
        pick = store.query(task="pick")
        assert len(pick) == 6 and {e.episode_id for e in pick} == {1, 2}
        failed = store.query(success=False, order="time")
        assert [e.step for e in failed] == [0, 10, 20] and all(e.episode_id == 2 for e in failed)
        e = failed[1]
        assert np.array_equal(e.state, episode_arrays(1)["state"][10])
        assert np.array_equal(e.trajectory["image"], episode_arrays(1)["image"][10:12])
        assert float(e.predicted[0]) == 0.5 and e.reward == 1.0
        stats = store.stats()
        assert stats["episodes_complete"] == 3 and stats["experiences"] == 9
        assert stats["success_rate"] == pytest.approx(2 / 3) and stats["episodes_by_task"] == {"pick": 2, "pour": 1}
        assert store.episodes(success=True, task="pour")[0].id == 3


def test_aborted_and_unknown_episodes(tmp_path: Path) -> None:
    with ExperienceStore(tmp_path / "mem.db") as store:
        eid = store.begin_episode({"task": "pick"})
        store.add(Experience(eid, 0, "pick", np.zeros(3), np.zeros(3)))
        store.abort_episode(eid)
        assert store.episode(eid).status == "incomplete" and store.query() == []
        with pytest.raises(KeyError):
            store.add(Experience(eid, 1, "pick", np.zeros(3), np.zeros(3)))
        with pytest.raises(KeyError):
            store.load_trajectory(eid)


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_memory import episode_arrays
    from sage_gr00t.memory import Experience, ExperienceStore

    store = ExperienceStore(sys.argv[1])
    n_complete = int(sys.argv[2])  # -1: write episodes until killed
    k = 0
    while n_complete < 0 or k <= n_complete:
        arrays = episode_arrays(k)
        eid = store.begin_episode({{"task": "pick", "k": k}})
        for t in range(len(arrays["state"])):
            store.append_step(eid, **{{name: a[t] for name, a in arrays.items()}})
            store.add(Experience(eid, t, "pick", arrays["state"][t], arrays["action"][t], reward=float(t)))
        if k == n_complete:
            print("inflight", eid, flush=True)
            time.sleep(60)
        store.end_episode(eid, success=k % 2 == 0)
        print("committed", eid, k, flush=True)
        k += 1
    """
)


def run_writer(
    db: Path, n_complete: int, kill_after: int, delay: float = 0.0
) -> tuple[list[tuple[int, int]], int | None]:
    """Start a writer process, SIGKILL it after `kill_after` output lines; returns (committed (id, k), inflight id)."""
    script = _WRITER.format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script, str(db), str(n_complete)], stdout=subprocess.PIPE, text=True)
    committed, inflight = [], None
    assert proc.stdout is not None
    for _ in range(kill_after):
        line = proc.stdout.readline().split()
        assert line, "writer died early"
        if line[0] == "committed":
            committed.append((int(line[1]), int(line[2])))
        else:
            inflight = int(line[1])
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    committed += [(int(w[1]), int(w[2])) for w in (ln.split() for ln in proc.stdout) if w and w[0] == "committed"]
    return committed, inflight


def check_complete_episodes(store: ExperienceStore) -> list[int]:
    ids = []
    for rec in store.episodes():
        arrays = episode_arrays(rec.meta["k"])
        traj = store.load_trajectory(rec.id)
        assert all(np.array_equal(traj[n], a) for n, a in arrays.items())
        assert rec.n_experiences == len(store.query(episode_id=rec.id)) == len(arrays["state"])
        ids.append(rec.id)
    return ids


def test_sigkill_mid_episode_loses_only_the_episode_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "mem.db"
    committed, inflight = run_writer(db, n_complete=4, kill_after=5)
    assert [k for _, k in committed] == [0, 1, 2, 3] and inflight is not None
    with ExperienceStore(db) as store:
        assert store.recovered == [inflight]
        assert check_complete_episodes(store) == [eid for eid, _ in committed]
        assert store.episode(inflight).status == "incomplete"
        assert store.query(episode_id=inflight) == []
        stats = store.stats()
        assert stats["episodes_complete"] == 4 and stats["episodes_incomplete"] == 1
        assert stats["episodes_in_progress"] == 0 and stats["success_rate"] == 0.5
        # The store keeps working after recovery.
        eid = store.begin_episode({"task": "pick", "k": 9})
        store.end_episode(eid, success=True, trajectory=episode_arrays(9))
    with ExperienceStore(db) as store:
        assert store.recovered == [] and len(store.episodes()) == 5


def test_sigkill_at_an_arbitrary_moment_keeps_every_commit(tmp_path: Path) -> None:
    db = tmp_path / "mem.db"
    # Continuous writer, killed right after it reports a commit: the kill lands mid-way through the
    # next episode (appending, adding, or inside end_episode's transaction).
    committed, _ = run_writer(db, n_complete=-1, kill_after=6, delay=0.003)
    with ExperienceStore(db) as store:
        ids = check_complete_episodes(store)
        assert set(ids) >= {eid for eid, _ in committed}  # every reported commit survived
        assert len(ids) <= len(committed) + 1  # at most the one being committed at the kill
        everything = store.episodes(status=None)
        assert all(r.status in ("complete", "incomplete") for r in everything)
        incomplete = [r.id for r in everything if r.status == "incomplete"]
        assert len(incomplete) <= 1 and all(store.query(episode_id=i) == [] for i in incomplete)


def test_reader_does_not_break_a_live_writer(tmp_path: Path) -> None:
    db = tmp_path / "mem.db"
    with ExperienceStore(db) as writer:
        eid = writer.begin_episode({"task": "pick"})
        with ExperienceStore(db) as reader:  # same host, writer alive: its episode is left alone
            assert reader.recovered == [] and reader.stats()["episodes_in_progress"] == 1
        writer.end_episode(eid, success=True)
        assert writer.episode(eid).status == "complete"


# ------------------------------------------------------------------ foreign / newer files are refused untouched
def _fingerprint(db: Path) -> tuple[str, list[str]]:
    """sha256 of the file and the names of everything next to it (catches created -wal/-shm/-journal)."""
    return hashlib.sha256(db.read_bytes()).hexdigest(), sorted(p.name for p in db.parent.iterdir())


def _foreign_app_db(db: Path) -> None:
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');")
    con.close()


def _foreign_episodes_db(db: Path) -> None:  # a table named like ours, with other columns
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE episodes (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO episodes VALUES (1,'');")
    con.close()


def _foreign_wal_db(db: Path) -> None:  # another program's database in WAL mode, closed cleanly
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');")
    con.close()


def _other_application_id(db: Path) -> None:  # our table names, someone else's application_id
    con = sqlite3.connect(db)
    con.executescript(_SCHEMA + "PRAGMA application_id = 1234;")
    con.close()


def _newer_store(db: Path) -> None:
    ExperienceStore(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()


def _not_sqlite(db: Path) -> None:
    db.write_bytes(b"plain text, not a database\n" * 50)


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (_foreign_app_db, r"another database .*users"),
        (_foreign_episodes_db, r"another database .*episodes"),
        (_foreign_wal_db, r"another database .*notes"),
        (_other_application_id, r"another application .*application_id 0x4d2"),
        (_newer_store, rf"schema version {SCHEMA_VERSION + 1}, newer than this code's {SCHEMA_VERSION}"),
        (_not_sqlite, r"not a SQLite database"),
    ],
)
def test_store_refuses_foreign_or_newer_files_untouched(tmp_path: Path, make, found: str) -> None:
    db = tmp_path / "other.db"
    make(db)
    before = _fingerprint(db)
    for _ in range(2):  # a second attempt (after the first refusal) is refused the same way
        with pytest.raises(StoreFormatError, match=found) as err:
            ExperienceStore(db)
        assert str(db) in str(err.value) and "untouched" in str(err.value)
        assert _fingerprint(db) == before  # byte-for-byte, and no -wal/-shm/-journal created


def test_store_opens_new_empty_current_and_pre_marker_files(tmp_path: Path) -> None:
    # New path (in a folder with awkward URI characters) and an existing empty file are initialised.
    odd = tmp_path / "a dir?#%" / "mem.db"
    empty = tmp_path / "empty.db"
    empty.touch()
    for db in (odd, empty):
        with ExperienceStore(db) as store:
            assert store.opened_as == "new"
            store.end_episode(store.begin_episode({"task": "pick"}), success=True)
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        con.close()
        with ExperienceStore(db) as store:
            assert store.opened_as == "current" and len(store.episodes()) == 1
    # A store written by earlier versions of this code: its tables, user_version 1 (or 0), no application_id.
    for version in (1, 0):
        db = tmp_path / f"legacy{version}.db"
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(_SCHEMA)
        con.execute(f"PRAGMA user_version={version}")
        con.execute("INSERT INTO episodes (task, status, started_at) VALUES ('pick', 'complete', 0)")
        con.close()
        with ExperienceStore(db) as store:
            assert store.opened_as == "legacy" and [r.task for r in store.episodes()] == ["pick"]
        with ExperienceStore(db) as store:
            assert store.opened_as == "current"


# ------------------------------------------------------------------ metabolic states
def drive(ctrl: MetabolicController, n: int, **inputs: object) -> list[MetabolicState]:
    return [ctrl.step(MetabolicInputs(**inputs)) for _ in range(n)]  # type: ignore[arg-type]


def test_metabolic_scripted_day() -> None:
    cfg = MetabolicConfig(idle_steps_to_rest=5, dream_min_unconsolidated=3, crisis_recovery_steps=4)
    m = MetabolicController(cfg)
    S = MetabolicState
    assert drive(m, 3) == [S.WAKE] * 3  # idle, but not for long
    assert drive(m, 10, task_active=True) == [S.FOCUS] * 10  # task starts
    assert drive(m, 1) == [S.WAKE]  # task done
    assert drive(m, 4)[-1] is S.WAKE and drive(m, 1) == [S.REST]  # idle 5 steps
    assert drive(m, 5, unconsolidated=2) == [S.REST] * 5 and not m.should_sleep
    assert drive(m, 1, unconsolidated=3) == [S.DREAM] and m.should_sleep  # consolidate now
    assert drive(m, 3, unconsolidated=3) == [S.DREAM] * 3
    assert drive(m, 1, unconsolidated=3, consolidation_done=True) == [S.WAKE] and not m.should_sleep
    assert drive(m, 1, task_active=True) == [S.FOCUS]
    states = [s for _, s in m.history]
    assert states == [S.WAKE, S.FOCUS, S.WAKE, S.REST, S.DREAM, S.WAKE, S.FOCUS]
    steps = [s for s, _ in m.history]
    assert steps == sorted(steps) and m.state_at(steps[3]) is S.REST and m.state_at(steps[3] - 1) is S.WAKE
    # A task preempts rest and dreams.
    drive(m, 1)
    drive(m, 5)
    assert m.state is S.REST and drive(m, 1, task_active=True) == [S.FOCUS]
    # Awake but excited: no rest while the recent salience is high, rest once it has calmed down.
    drive(m, 20, task_active=True, salience=0.9)
    assert drive(m, 20, salience=0.9) == [S.WAKE] * 20
    assert drive(m, 10)[-1] is S.REST


def test_metabolic_crisis_on_failure_streak_and_recovery() -> None:
    m = MetabolicController(MetabolicConfig(crisis_failure_streak=3, crisis_recovery_steps=4))
    S = MetabolicState
    drive(m, 1, task_active=True)
    # Two failures then a success: the streak resets, no crisis.
    for outcome in ("failure", "failure", "success", "failure", "failure"):
        drive(m, 2, task_active=True)
        drive(m, 1, task_active=True, **{outcome: True})
    assert m.state is S.FOCUS and m.failure_streak == 2
    assert drive(m, 1, task_active=True, failure=True) == [S.CRISIS]
    assert drive(m, 3, task_active=True) == [S.CRISIS] * 3
    assert drive(m, 1, task_active=True, failure=True) == [S.CRISIS]  # calm counter restarts
    assert drive(m, 3, task_active=True) == [S.CRISIS] * 3
    assert drive(m, 1, task_active=True) == [S.WAKE] and m.failure_streak == 0  # recovered
    assert drive(m, 1, task_active=True) == [S.FOCUS]
    assert "failure streak 3" in next(r for _, st, r in m.transitions if st is S.CRISIS)


def test_metabolic_crisis_on_safety_violations_and_low_energy_rest() -> None:
    S = MetabolicState
    m = MetabolicController(MetabolicConfig(crisis_safety_violations=2, safety_window=10))
    drive(m, 1, safety_violation=True)
    drive(m, 10)
    assert drive(m, 1, safety_violation=True) == [S.WAKE]  # first violation left the window
    assert drive(m, 1, safety_violation=True) == [S.CRISIS]
    tired = MetabolicController(MetabolicConfig(drain_focus=0.1, idle_steps_to_rest=1000))
    drive(tired, 9, task_active=True)
    assert tired.state is S.FOCUS and tired.energy < 0.2  # keeps working while the task lasts
    assert drive(tired, 2) == [S.WAKE, S.REST]  # then rests at once, long before the idle limit
    drive(tired, 100)
    assert tired.energy > 0.2 and tired.state is S.REST


def test_memory_module_is_fast() -> None:
    # 1000 control steps of scoring + buffering stay far below the 50 ms control period per step.
    scorer, rng, base = warmed_scorer()
    buf = SalienceBuffer()
    t0 = time.perf_counter()
    for t in range(1000):
        buf.offer(scorer.annotate(routine(rng, t, base + 0.001 * t)))
    assert (time.perf_counter() - t0) / 1000 < 0.005
