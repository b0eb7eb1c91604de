"""What the CPU offers (dcgan_cli/machine.py): its flags read from /proc/cpuinfo's text, where TensorFlow turns its
oneDNN kernels on by itself, where dcgan-cli turns them on instead, and the user's switch that turns them off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dcgan_cli import machine
from dcgan_cli.machine import ONEDNN, Cpu, default_onednn, onednn_on, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma avx512_bf16
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes bf16 i8mm
CPU implementer\t: 0x41
"""


def cpu(*flags: str, architecture: str = "x86_64", system: str = "Linux") -> Cpu:
    return Cpu(model="test CPU", flags=frozenset(flags), architecture=architecture, system=system)


def test_cpuinfo_gives_the_first_processors_model_and_flags():
    assert parse_cpuinfo(X86) == ("AMD EPYC 7B13", frozenset({"fpu", "sse2", "avx", "avx2", "fma"}))
    assert parse_cpuinfo(ARM) == ("unknown", frozenset({"fp", "asimd", "evtstrm", "aes", "bf16", "i8mm"}))
    assert parse_cpuinfo("") == ("unknown", frozenset())


@pytest.mark.parametrize("found, by_tensorflow, by_us", [
    (cpu("avx", "avx2", "fma"), False, True),  # an AVX2 x86 CPU: TensorFlow leaves oneDNN off, it pays there
    (cpu("avx2", "avx512f", "avx512_vnni"), True, False),  # TensorFlow turns it on by itself
    (cpu("avx2", "avx512_bf16"), True, False),
    (cpu("avx2", "amx_tile", "amx_bf16"), True, False),
    (cpu("avx2", "avx_vnni"), True, False),
    (cpu("sse2", "avx"), False, False),  # no AVX2: never measured, left as TensorFlow leaves it
    (cpu("avx2", system="Windows"), False, False),
    (cpu("asimd", "bf16", architecture="aarch64"), False, False),
])
def test_onednn_is_turned_on_only_where_tensorflow_leaves_it_off_and_it_was_measured_faster(found, by_tensorflow,
                                                                                            by_us):
    assert found.tensorflow_enables_onednn is by_tensorflow
    assert found.onednn_pays is by_us
    environ: dict[str, str] = {}
    default_onednn(environ, found)
    assert environ == ({ONEDNN: "1"} if by_us else {})
    assert onednn_on(environ, found) is (by_tensorflow or by_us)


@pytest.mark.parametrize("value, on", [("0", False), ("false", False), ("1", True), ("true", True)])
def test_the_users_own_setting_is_kept_and_decides(value, on):
    for found in (cpu("avx2"), cpu("avx2", "avx512_vnni")):
        environ = {ONEDNN: value}
        default_onednn(environ, found)
        assert environ == {ONEDNN: value} and onednn_on(environ, found) is on


def test_native_bfloat16_needs_avx512_bf16_or_amx():
    assert not cpu("avx2", "avx512f", "avx512_vnni").native_bfloat16
    assert cpu("avx512_bf16").native_bfloat16 and cpu("amx_bf16").native_bfloat16
    assert "avx512_bf16" in cpu("avx2", "avx512_bf16", "sse2").describe()
    # Without bfloat16 arithmetic, TensorFlow converts in oneDNN with AVX-512 and computes in its own kernels without
    assert cpu("avx2", "avx512f").bfloat16_slowdown == machine.BFLOAT16_SLOWDOWN_AVX512
    assert cpu("avx2").bfloat16_slowdown == machine.BFLOAT16_SLOWDOWN_AVX2


@pytest.mark.e2e
@pytest.mark.parametrize("setting", [None, "0"])
def test_the_package_sets_the_default_before_tensorflow_starts_and_tensorflow_follows_it(setting):
    """On this machine's CPU: importing dcgan_cli sets the switch as Cpu.onednn_pays says, and TensorFlow, started
    afterwards, runs oneDNN exactly where machine.onednn_on predicts; TF_ENABLE_ONEDNN_OPTS=0 turns it off."""
    env = {key: value for key, value in os.environ.items() if key != ONEDNN}
    if setting is not None:
        env[ONEDNN] = setting
    probe = ("import json, os, dcgan_cli; from dcgan_cli import machine; import tensorflow; "
             "from tensorflow.python.util import _pywrap_util_port as port; "
             "print(json.dumps([os.environ.get(machine.ONEDNN), port.IsMklEnabled(), machine.onednn_on()]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    switch, tensorflow_on, predicted = json.loads(result.stdout.strip().splitlines()[-1])
    here = machine.this_cpu()
    assert switch == (setting if setting is not None else ("1" if here.onednn_pays else None))
    assert tensorflow_on is predicted
    if setting == "0":
        assert tensorflow_on is False
