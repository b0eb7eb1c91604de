"""What this machine's CPU offers, read without starting an engine: its model and feature flags, whether it computes
bfloat16 natively, and whether TensorFlow's oneDNN kernels are on. TensorFlow reads its oneDNN switch once, when it
starts, so `default_onednn` runs when the package is imported (dcgan_cli/__init__.py), before any engine."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import MutableMapping

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"  # TensorFlow's own switch: 1 on, 0 off; unset, TensorFlow decides by the CPU
# TensorFlow turns oneDNN on by itself on Linux where the CPU has one of these (DefaultOneDnnPolicy in its
# tensorflow/core/util/util.cc); elsewhere on x86 Linux it leaves them off.
TENSORFLOW_ONEDNN_FLAGS = frozenset({"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"})
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # bfloat16 arithmetic in hardware
# oneDNN measured faster on such a CPU (an AVX2 AMD EPYC): 1.64x at one compute thread, 1.04x at two
# (docs/loops.md#cpu-speed); an older x86 CPU without AVX2 is left as TensorFlow leaves it, unmeasured.
ONEDNN_MEASURED_FLAG = "avx2"
# How much faster float32 trained than bfloat16 on a CPU without bfloat16 arithmetic (docs/loops.md#precision).
# With AVX-512, TensorFlow's oneDNN kernels convert to float32 and back: 2.1x (an Intel Xeon without avx512_bf16 or
# amx_bf16). Without AVX-512, TensorFlow computes bfloat16 in its own kernels: 11x, a tune worker on an AMD EPYC
# with oneDNN capped at AVX2 (docs/loops.md#precision).
BFLOAT16_SLOWDOWN_AVX512 = 2.1
BFLOAT16_SLOWDOWN_AVX2 = 11


@dataclass(frozen=True)
class Cpu:
    """The CPU as the operating system describes it: its model name, its feature flags (/proc/cpuinfo's, lower
    case; none where the system has no such file) and the architecture and system Python reports."""

    model: str
    flags: frozenset[str]
    architecture: str  # platform.machine(): x86_64, aarch64, arm64, AMD64
    system: str  # platform.system(): Linux, Darwin, Windows

    @property
    def native_bfloat16(self) -> bool:
        """Whether the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), so that bfloat16 pays."""
        return bool(self.flags & NATIVE_BFLOAT16_FLAGS)

    @property
    def bfloat16_slowdown(self) -> float:
        """How many times faster float32 trains than bfloat16 on such a CPU without bfloat16 arithmetic."""
        return BFLOAT16_SLOWDOWN_AVX512 if "avx512f" in self.flags else BFLOAT16_SLOWDOWN_AVX2

    @property
    def x86_linux(self) -> bool:
        return self.system == "Linux" and self.architecture in ("x86_64", "AMD64")

    @property
    def tensorflow_enables_onednn(self) -> bool:
        """Whether TensorFlow turns its oneDNN kernels on by itself on this CPU."""
        return self.x86_linux and bool(self.flags & TENSORFLOW_ONEDNN_FLAGS)

    @property
    def onednn_pays(self) -> bool:
        """Whether dcgan-cli turns oneDNN on where TensorFlow would not: x86 Linux with AVX2 but none of
        TensorFlow's flags, the kind of CPU where oneDNN was measured faster."""
        return self.x86_linux and ONEDNN_MEASURED_FLAG in self.flags and not self.tensorflow_enables_onednn

    def describe(self) -> str:
        """The model and the flags that decide the kernels and the precision, for a benchmark's record."""
        deciding = TENSORFLOW_ONEDNN_FLAGS | NATIVE_BFLOAT16_FLAGS | {ONEDNN_MEASURED_FLAG, "avx512f"}
        return f"{self.model} ({', '.join(sorted(self.flags & deciding)) or 'no avx2'})"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The first processor's model name and feature flags in /proc/cpuinfo's text (x86 'flags', Arm 'Features')."""
    model, flags = "unknown", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.lower().split())
    return model, flags


@cache
def this_cpu() -> Cpu:
    """This machine's CPU (read once)."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        model, flags = platform.processor() or "unknown", frozenset()
    return Cpu(model=model, flags=flags, architecture=platform.machine(), system=platform.system())


def default_onednn(environ: MutableMapping[str, str] = os.environ, cpu: Cpu | None = None) -> None:
    """Turn TensorFlow's oneDNN kernels on where TensorFlow leaves them off and they pay (Cpu.onednn_pays). A value
    the user set is kept: TF_ENABLE_ONEDNN_OPTS=0 turns them off."""
    if ONEDNN not in environ and (cpu or this_cpu()).onednn_pays:
        environ[ONEDNN] = "1"


def onednn_on(environ: MutableMapping[str, str] = os.environ, cpu: Cpu | None = None) -> bool:
    """Whether TensorFlow runs its oneDNN kernels in a process started with `environ`: as the switch says when set,
    else as TensorFlow decides by the CPU."""
    value = environ.get(ONEDNN, "").strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    return (cpu or this_cpu()).tensorflow_enables_onednn
