"""The core tests again under KERAS_BACKEND=jax and torch, each group in its own process.

The groups are separate test items so that pytest-xdist can run them beside the rest of the suite; a process per
group rather than per test keeps the start-up cost (importing two engines) to a few processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_losses.py", "tests/test_train.py", "tests/test_compiled.py", "tests/test_evaluate.py",
         "tests/test_draws.py", "tests/test_hacks.py", "tests/test_ema.py", "tests/test_health.py",
         "tests/test_more_hacks.py", "tests/test_conditional.py", "tests/test_replay.py", "tests/test_adaptive.py"]
# Five processes per backend: the core loop, then hacks 12-15, 16-20, 21-22 and 23 on, each hack by its own tests.
GROUPS = {
    "core": "test_d_update_trains_d_only or test_in_the_g_update or test_fakes_come_from or "
            "test_d_and_g_updates_touch_only or test_both_loops_agree or test_the_compiled_loop_resumes or "
            "test_a_dataset_too_big or test_the_compiled_loop_scores or test_scoring_during_training_does_not_change or "
            "test_a_steps_draws or test_batch_indices_are or test_the_checkpoint_records_the_draw or "
            "test_latent_distribution or test_separate_batches or test_label_smoothing or test_noisy_labels or "
            "test_the_average_equals or test_a_resumed_run_keeps_the_average or test_probing_never_changes or "
            "test_rollbacks_restore_the_named or test_the_logit_loss or test_g_loss_keeps or "
            "test_gs_gradient_survives or test_the_g_update_reports",
    "hacks 12-15": "test_ttur or test_train_d_more or test_instance_noise or test_g_dropout_both_loops_agree or "
                   "test_g_dropout_follows",
    "hacks 16-20": "test_spectral_norm_moves_only or test_spectral_norm_trains_alike or test_hinge or "
                   "test_r1_changes or test_lazy_r1 or test_minibatch_std or test_diff_augment",
    "hacks 21-": "test_g_and_d_take_the_class or test_fake_classes_depend or test_both_loops_train_the_same_cond or "
                 "test_conditional_batch_norm or "
                 "test_a_conditional_run_resumes or test_replay",
    "hacks 23-": "test_p_rises or test_both_loops_move_p or test_both_loops_agree_on_weights_and_state or "
                 "test_p_and_lecams or test_p_0_is or test_lecam_matches",
}
# Each hack from 12 on, and the tests that check it by itself (on by itself, both loops, against hand values).
HACK_TESTS = {"ttur": "test_ttur", "train_d_more": "test_train_d_more", "instance_noise": "test_instance_noise",
              "g_dropout": "test_g_dropout", "spectral_norm": "test_spectral_norm", "hinge_loss": "test_hinge",
              "r1_penalty": "test_r1_changes", "minibatch_std": "test_minibatch_std",
              "diff_augment": "test_diff_augment", "class_conditional": "test_both_loops_train_the_same_cond",
              "replay": "test_replay", "adaptive_augment": "test_p_rises", "lecam": "test_lecam_matches"}
JAX_ONLY = {"core": " or test_the_jax_step_reuses"}


def rerun(backend: str, selection: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           *FILES, "-k", selection], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=900)


@pytest.mark.e2e
@pytest.mark.usefixtures("tiny_scores")
@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_core_tests_pass_on_the_other_backends(backend, group):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("run from the default backend only")
    result = rerun(backend, GROUPS[group] + (JAX_ONLY.get(group, "") if backend == "jax" else ""))
    assert result.returncode == 0, result.stdout[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and " failed" not in summary, summary


def test_every_hack_from_12_on_is_rerun_by_its_own_tests():
    from dcgan_cli.ablate.design import GROUPS as FACTOR_GROUPS

    assert set(HACK_TESTS) == set(FACTOR_GROUPS["new"]) - {"ema"}
    selections = " or ".join(GROUPS.values())
    assert all(prefix in selections for prefix in HACK_TESTS.values())
