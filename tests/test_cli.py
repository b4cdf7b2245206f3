"""Console commands end to end: sage-eval drives an episode through sage-serve over ZeroMQ; bad input gets one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from sage_gr00t.cli import eval as sage_eval
from sage_gr00t.paths import REPO_ROOT

POLICY = REPO_ROOT / "assets" / "policies" / "gr00t_compact"


@pytest.fixture()
def served_policy():
    """`sage-serve` in its own process on a free loopback port; yields the port."""
    proc = subprocess.Popen([sys.executable, "-m", "sage_gr00t.cli.serve", "--policy", str(POLICY), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, port = time.monotonic() + 120, None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            match = re.search(r"serving .* on tcp://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port is not None, "sage-serve did not report its address"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sage_eval_drives_an_episode_against_sage_serve(served_policy, tmp_path) -> None:
    code = sage_eval.main(["--policy", f"zmq://127.0.0.1:{served_policy}", "--task", "pick_apple", "--episodes", "1",
                           "--max-steps", "20", "--out", str(tmp_path), "--task-option", "image_height=128",
                           "image_width=128"])
    assert code == 0
    (episode,) = json.loads((tmp_path / "results.json").read_text())
    assert episode["task"] == "pick_apple" and episode["seed"] == 1000
    assert episode["steps"] == 20
    # 20 control steps at 8 executed steps per chunk: the server was asked for 3 chunks.
    assert episode["policy_queries"] == 3
    assert episode["arm_jerk"] > 0  # the remote actions moved the arm


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "juggle", "--episodes", "1"], "Unknown task"),
    (["--policy", "no/such/folder", "--task", "pick_apple"], "is not 'expert', a checkpoint folder"),
    (["--policy", "zmq://localhost", "--task", "pick_apple"], "zmq://HOST:PORT"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--episodes", "-3"], "--episodes must be >= 1"),
    (["--max-steps", "-5"], "--max-steps must be >= 1"),
    (["--controller", "sage", "--command", ""], "--command is empty"),
    (["--controller", "sage", "--command", "   "], "--command is empty"),
    (["--task-option", "image_height=-5", "--task", "pick_apple", "--episodes", "1"], "image_height and image_width"),
    (["--task", "pick_apple", "--out", __file__], "is a file; give a folder"),
    (["--task-option", "image_height"], "KEY=VALUE"),
    (["--task-option", "camera=x", "--task", "pick_apple", "--episodes", "1"], "Unknown task option"),
    (["--task", "pick_apple", "--embodiment", "atlas"], "Unknown embodiment 'atlas'"),
    (["--task", "pick_apple", "--variant", "upside_down"], "Task pick_apple has no variant 'upside_down'"),
    (["--randomization", "extreme"], "Unknown randomization profile(s) ['extreme']"),
    (["--sweep", "gravity"], "Unknown randomization factor(s) ['gravity']"),
    (["--task", "pick_apple", "--ray", "127.0.0.1:1"], "no Ray cluster reachable at 127.0.0.1:1"),
    (["--task", "pick_apple", "--ray", "no-port-here"], "expected 'auto', HOST:PORT"),
    (["--task", "pick_apple", "--ray", "auto", "--episodes", "1"], "--ray auto: no running Ray cluster found"),
    (["--instruction", "shout"], "--instruction must be 'task', 'mismatched' or 'paraphrase'"),
    (["--controller", "sage", "--instruction", "paraphrase", "--command", "put the apple on the plate"],
     "drop --command"),
])
def test_sage_eval_bad_input_gets_a_clear_message(argv: list[str], message: str, capsys) -> None:
    """Exit status 2 and ONE line that names the problem (tyro's parse errors included), never a traceback."""
    try:
        code = sage_eval.main(argv)
    except SystemExit as exc:  # tyro's parse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("sage-eval: error: ") and message in err, err


def test_sage_serve_refuses_the_expert_and_bad_ports(capsys) -> None:
    from sage_gr00t.cli import serve

    for argv, message in ((["--policy", "expert"], "serve a checkpoint folder"),
                          (["--port", "70000"], "--port must be in 0..65535")):
        with pytest.raises(SystemExit) as exc:
            serve.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_an_interrupted_evaluation_keeps_every_finished_episode(tmp_path) -> None:
    """Ctrl-C (SIGINT) mid-run: exit status 130, and every episode that finished is in results.json (rewritten
    atomically after each one, so it is never half a file)."""
    import signal

    # A Ctrl-C reaches the command as SIGINT with its default handler, also when this test itself runs as a
    # background job (whose children inherit SIGINT ignored).
    proc = subprocess.Popen([sys.executable, "-m", "sage_gr00t.cli.eval", "--policy", "expert", "--task", "pick_apple",
                             "--episodes", "50", "--out", str(tmp_path), "--task-option", "image_height=32",
                             "image_width=32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        results = tmp_path / "results.json"
        seen: list[dict] = []
        while time.monotonic() < deadline and len(seen) < 2 and proc.poll() is None:
            time.sleep(0.2)
            seen = json.loads(results.read_text()) if results.exists() else []  # always a whole list
        assert len(seen) >= 2, "no episode finished"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    episodes = json.loads(results.read_text())
    assert 2 <= len(episodes) < 50
    assert episodes[:len(seen)] == seen
    assert [e["seed"] for e in episodes] == list(range(1000, 1000 + len(episodes)))


@pytest.mark.parametrize(("module", "argv", "message"), [
    ("collect", ["--task", "pick_apple", "--episodes", "-2", "--out", "/tmp/x"], "--episodes must be >= 1"),
    ("collect", ["--task", "pick_apple", "--episodes", "0", "--out", "/tmp/x"], "--episodes must be >= 1"),
    ("train", ["--datasets", "x", "--batch-size", "0"], "--batch-size must be >= 1"),
    ("train", ["--datasets", "x", "--paraphrase-prob", "1.5"], "--paraphrase-prob must be in [0, 1]"),
    ("train", ["--datasets", "x", "--grounding-head-warmup", "-1"], "--grounding-head-warmup must be >= 0"),
    ("sleep", ["--datasets", "x", "--learn-planner"], "--learn-planner needs --memory"),
    ("train_planner", ["--steps", "0"], "--steps must be >= 1"),
    ("eval_planner", ["--n", "0"], "--n must be >= 1"),
    ("export_groot", ["--src", "a", "--dst", "b", "--crf", "99"], "--crf must be in 0..51"),
    ("panel", ["--speed-percent", "5"], "speed_percent must be in [10, 100]"),
    ("serve", ["--port", "-1"], "--port must be in 0..65535"),
])
def test_every_command_family_refuses_bad_values_in_a_clear_message(module: str, argv: list[str], message: str,
                                                                      capsys) -> None:
    """Exit status 2 and one line naming the flag; no traceback."""
    import importlib

    command = importlib.import_module(f"sage_gr00t.cli.{module}")
    try:
        code = command.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and ": error: " in err and message in err, err


def test_held_out_words_reach_the_policy_and_sage(tmp_path) -> None:
    """--instruction paraphrase: each episode's own goal in the planner's held-out templates, as the plain
    policy's instruction and as SAGE's command (the expert executes, so success says the words were understood)."""
    from sage_gr00t.tasks import get_task

    for controller in ("policy", "sage"):
        out = tmp_path / controller
        assert sage_eval.main(["--policy", "expert", "--controller", controller, "--task", "sort_blocks",
                               "--instruction", "paraphrase", "--episodes", "2", "--out", str(out)]) == 0
        records = json.loads((out / "results.json").read_text())
        records = records if isinstance(records, list) else records["episodes"]
        assert len(records) == 2
        declared = get_task("sort_blocks")("train").instructions()  # the phrasings training saw
        for record in records:
            assert record["instruction"] not in declared, record["instruction"]
            if controller == "sage":
                assert record["success"], record
