"""Preemption: SIGTERM / SIGUSR2 / a first Ctrl-C stop training at a step boundary with the resume
state of that step saved; a previously installed handler (submitit's) is still called; resuming gives
the uninterrupted run bit for bit. One test sends SIGTERM to a real `twoclocks-probe train` process."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY
from twoclocks.run import load_checkpoint, read_config
from twoclocks.training.train import Preempted, train


def _weights(run_dir, name):
    return load_checkpoint(run_dir / "checkpoints" / name)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _losses(run_dir):
    return [(d["step"], d["loss"]) for d in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def _signal_at(step, *signums):
    def callback(s, loss):
        if s == step:
            for sig in signums:
                os.kill(os.getpid(), sig)
    return callback


@pytest.mark.parametrize("previous", ["returns", "exits"])
def test_usr2_saves_then_chains_to_the_previous_handler(tmp_path, previous):
    """SIGUSR2 at step 23: resume.pt holds step 23 when the previous handler runs (submitit's requeues
    then exits: "exits"); with one that returns, train raises Preempted(23). Resumed: the same weights
    and log as an uninterrupted run."""
    cfg = dict(TINY, steps=40, resume_every=15)
    train(tmp_path / "full", cfg, progress=False)
    seen = []

    def handler(signum, frame):
        seen.append((signum, load_checkpoint(tmp_path / "cut/checkpoints/resume.pt")["step"]))
        if previous == "exits":
            sys.exit(-1)
    old = signal.signal(signal.SIGUSR2, handler)
    try:
        with pytest.raises(SystemExit if previous == "exits" else Preempted) as e:
            train(tmp_path / "cut", cfg, progress=False, callback=_signal_at(23, signal.SIGUSR2))
        assert signal.getsignal(signal.SIGUSR2) is handler  # given back
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert seen == [(signal.SIGUSR2, 23)]
    if previous == "returns":
        assert (e.value.step, e.value.signum, e.value.exit_code) == (23, signal.SIGUSR2, 128 + signal.SIGUSR2)
        assert str(e.value) == "preempted by SIGUSR2 at step 23: state saved; resume with --resume"
        back = pickle.loads(pickle.dumps(e.value))  # submitit pickles a job's exception
        assert (type(back), back.step, back.signum, str(back)) == (Preempted, 23, signal.SIGUSR2, str(e.value))
    train(tmp_path / "cut", {}, resume=True, progress=False)
    for name in ("step_00000032.pt", "step_00000040.pt", "resume.pt"):
        assert _same(_weights(tmp_path / "full", name), _weights(tmp_path / "cut", name)), name
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut")


@pytest.fixture
def sigint_handled():
    """SIGINT handled as in an interactive Python (KeyboardInterrupt), whatever the suite was launched
    with: `nohup` or `python -m pytest &` from a script start it ignored (SIG_IGN), which the trainer
    rightly leaves alone. The launch-time handler comes back afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_once_stops_cleanly_twice_at_once(tmp_path, sigint_handled):
    """A first SIGINT stops at the step boundary (Preempted, exit code 130); two in a row raise a plain
    KeyboardInterrupt at once (here between steps, so step 7 is still saved)."""
    cfg = dict(TINY, steps=20)
    with pytest.raises(KeyboardInterrupt) as e:  # (not Preempted: a plain one must not abort pytest)
        train(tmp_path / "once", cfg, progress=False, callback=_signal_at(5, signal.SIGINT))
    assert isinstance(e.value, Preempted) and (e.value.step, e.value.exit_code) == (5, 130)
    with pytest.raises(KeyboardInterrupt) as e:
        train(tmp_path / "twice", cfg, progress=False, callback=_signal_at(7, signal.SIGINT, signal.SIGINT))
    assert not isinstance(e.value, Preempted)
    assert load_checkpoint(tmp_path / "twice/checkpoints/resume.pt")["step"] == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ignored_sigint_is_left_alone(tmp_path):
    """A process started with SIGINT ignored (nohup, `cmd &` from a script) keeps it ignored while
    training and after."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        train(tmp_path / "ign", dict(TINY, steps=3), progress=False,
              callback=lambda s, loss: os.kill(os.getpid(), signal.SIGINT))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert load_checkpoint(tmp_path / "ign/checkpoints/resume.pt")["step"] == 3


def test_sigterm_to_the_cli_process(tmp_path):
    """`python -m twoclocks.cli train` (100000 steps) gets SIGTERM once checkpoint 18 exists: it exits
    with the documented code and message, resume.pt holds the step it stopped at S (weights equal an
    uninterrupted S-step run's), and resumed to S + 20 it equals an uninterrupted run bit for bit."""
    cut = tmp_path / "cut"
    args = ["--side", "4", "--group", "2", "--n-train", "32", "--n-heldout", "64", "--n-noise", "64",
            "--model", "tiny", "--batch", "64", "--lr", "1e-3", "--steps", "100000", "--saves-per-decade", "4",
            "--device", "cpu", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "twoclocks.cli", "train", str(cut), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (cut / "checkpoints/step_00000018.pt").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # today's CLI reports every KeyboardInterrupt (Preempted is one) as exit 130; with a Preempted
    # clause it exits 128 + SIGTERM = 143 with Preempted's message
    expected = {130: "interrupted: finished work is saved", 128 + signal.SIGTERM: "preempted by SIGTERM at step"}
    assert proc.returncode in expected and expected[proc.returncode] in err, (proc.returncode, err)
    assert "Traceback" not in err
    stopped = load_checkpoint(cut / "checkpoints/resume.pt")["step"]
    assert 18 <= stopped < 100000 and max(s for s, _ in _losses(cut) or [(0, 0)]) <= stopped
    cfg = read_config(cut)[0].to_dict()
    train(tmp_path / "ref_s", dict(cfg, steps=stopped), progress=False)
    assert _same(_weights(tmp_path / "ref_s", f"step_{stopped:08d}.pt"), _weights(cut, "resume.pt"))
    train(tmp_path / "ref", dict(cfg, steps=stopped + 20), progress=False)
    train(cut, {"steps": stopped + 20}, resume=True, progress=False)
    for name in (f"step_{stopped + 20:08d}.pt", "resume.pt"):
        assert _same(_weights(tmp_path / "ref", name), _weights(cut, name)), name
    a, b = (load_checkpoint(d / "checkpoints/resume.pt")["optimizer"]["state"] for d in (tmp_path / "ref", cut))
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
