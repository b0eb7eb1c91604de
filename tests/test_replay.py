"""Hack 22, replay: D's fake batches take a share of past fakes from a buffer on the device, which every step
fills with its own; the buffer is checkpointed, the two loops agree, and a run resumes bit for bit."""

from __future__ import annotations


import keras
import numpy as np
import pytest

from dcgan_cli.config import ConfigError, HacksConfig, load_config
from dcgan_cli.nets import hacks
from dcgan_cli.state import draws
from dcgan_cli.training import train

from conftest import TINY, crashed_copy, runs_per_loop, saved_weights

REPLAY = ["hacks.replay=true", "hacks.replay_size=12", "output.checkpoint_every=1", "output.keep_checkpoints=4"]


def replay_cfg(*extra: str):
    return load_config(None, [*TINY, *REPLAY, *extra])


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory):
    return runs_per_loop(tmp_path_factory, lambda loop: replay_cfg(f"train.loop={loop}"))


def step_draws(seed: int = 0):
    return draws.Draws(replay_cfg(), count=10, seed=seed)


def run_replay(buffer, fake, step, *, fraction=0.5, classes=None):
    h = HacksConfig(replay=True, replay_size=buffer[0].shape[0], replay_fraction=fraction)
    d = step_draws()
    key = d.key(step, None)
    shown, labels, new = hacks.replay(fake, classes, buffer, d.random(key, slot=draws.REPLAY_READ_SLOT, extra=True),
                                      d.random(key, slot=draws.REPLAY_WRITE_SLOT, extra=True), hacks=h)
    return keras.ops.convert_to_numpy(shown), labels, tuple(keras.ops.convert_to_numpy(v) for v in new)


def batch_of(value: float, n: int = 4) -> np.ndarray:
    return np.full((n, 2, 2, 1), value, np.float32) + np.arange(n, dtype=np.float32)[:, None, None, None] / 100


def test_replay_off_changes_nothing():
    fake = batch_of(1.0)
    buffer = (np.zeros((8, 2, 2, 1), np.float32), np.zeros(8, np.int32), np.int32(0))
    h = HacksConfig()
    assert hacks.replay(fake, None, buffer, None, None, hacks=h) == (fake, None, buffer)
    assert step_draws().replay(fake, None, None, 1) == (fake, None, None)


def test_the_first_batch_is_its_own_and_the_buffer_fills_in_order_then_at_distinct_random_places():
    empty = (np.zeros((8, 2, 2, 1), np.float32), np.zeros(8, np.int32), np.int32(0))
    first = batch_of(1.0)
    shown, _, buffer = run_replay(empty, first, 1)
    np.testing.assert_array_equal(shown, first)  # nothing to replay yet
    np.testing.assert_array_equal(buffer[0][:4], first)
    assert buffer[2] == 4 and (buffer[0][4:] == 0).all()
    second = batch_of(2.0)
    shown, _, buffer = run_replay(buffer, second, 2)
    assert buffer[2] == 8 and np.array_equal(buffer[0][4:], second)
    assert all(any(np.array_equal(image, past) for past in first) for image in shown[:2]), "half from the buffer"
    np.testing.assert_array_equal(shown[2:], second[2:])
    third = batch_of(3.0)
    _, _, full = run_replay(buffer, third, 3)
    assert full[2] == 8
    replaced = [i for i in range(8) if not np.array_equal(full[0][i], buffer[0][i])]
    assert len(replaced) == 4 and sorted(float(full[0][i].flat[0]) for i in replaced) == sorted(
        float(v) for v in third[:, 0, 0, 0]), "four distinct places, each now holding one of the new fakes"


@pytest.mark.parametrize("fraction, taken", [(0.0, 0), (0.25, 1), (1.0, 4)])
def test_the_share_taken_from_the_buffer_follows_replay_fraction(fraction, taken):
    past = (np.full((8, 2, 2, 1), 9.0, np.float32), np.zeros(8, np.int32), np.int32(8))
    shown, _, _ = run_replay(past, batch_of(1.0), 5, fraction=fraction)
    assert int((shown[:, 0, 0, 0] == 9.0).sum()) == taken and (shown[:taken] == 9.0).all()


def test_replayed_fakes_keep_their_classes():
    past = (np.full((8, 2, 2, 1), 9.0, np.float32), np.arange(8, dtype=np.int32), np.int32(8))
    fake_classes = keras.ops.convert_to_tensor(np.array([1, 1, 1, 1], np.int32))
    shown, labels, buffer = run_replay(past, batch_of(1.0), 5, classes=fake_classes)
    labels = keras.ops.convert_to_numpy(labels)
    assert (labels[2:] == 1).all() and set(labels[:2].tolist()) <= set(range(8))
    assert (buffer[1][[i for i in range(8) if buffer[0][i, 0, 0, 0] != 9.0]] == 1).all()


def test_the_draws_of_replay_depend_only_on_seed_and_step():
    past = (np.random.default_rng(0).normal(size=(8, 2, 2, 1)).astype(np.float32), np.zeros(8, np.int32),
            np.int32(8))
    a, _, _ = run_replay(past, batch_of(1.0), 5)
    b, _, _ = run_replay(past, batch_of(1.0), 5)
    c, _, _ = run_replay(past, batch_of(1.0), 6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_replay_size_must_hold_a_batch():
    with pytest.raises(ConfigError, match=r"hacks.replay_size: .*train.batch_size 8\). Received: 4"):
        load_config(None, [*TINY, "hacks.replay=true", "hacks.replay_size=4"])


def test_replay_both_loops_agree_and_the_buffer_is_checkpointed(replay_run):
    split, compiled = saved_weights(replay_run("train_on_batch"), 4), saved_weights(replay_run("compiled"), 4)
    assert [key for key in split if not np.allclose(split[key], compiled[key], rtol=1e-4, atol=1e-6)] == []
    assert [int(saved_weights(replay_run("compiled"), step)["replay/0002"]) for step in (1, 2, 3)] == [8, 12, 12]
    assert not np.array_equal(saved_weights(replay_run("compiled"), 2)["replay/0000"],
                              saved_weights(replay_run("compiled"), 3)["replay/0000"])


def test_replay_changes_ds_training_and_not_before_there_is_a_past(replay_run, plain_run):
    replayed, plain = saved_weights(replay_run("compiled"), 1), saved_weights(plain_run("compiled"), 1)
    assert all(np.array_equal(replayed[key], plain[key]) for key in plain), "step 1: nothing to replay yet"
    replayed, plain = saved_weights(replay_run("compiled"), 2), saved_weights(plain_run("compiled"), 2)
    assert not np.array_equal(replayed["d/0000"], plain["d/0000"])


@pytest.mark.parametrize("loop", ["train_on_batch", "compiled"])
def test_replay_resumes_bit_for_bit(replay_run, tmp_path, loop):
    whole = replay_run(loop)
    crashed = crashed_copy(whole, after=2, to=tmp_path / "crashed")
    train.run(replay_cfg(f"train.loop={loop}"), run_dir=crashed, resume=True)
    a, b = saved_weights(whole, 4), saved_weights(crashed, 4)
    assert [key for key in a if not np.array_equal(a[key], b[key])] == []
