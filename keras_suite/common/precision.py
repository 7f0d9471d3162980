"""Choosing the mixed-precision policy.

`auto` picks mixed_bfloat16 only where bfloat16 is fast: TPUs, and CPUs with native
bfloat16 instructions (AVX512_BF16 or AMX). Measured on a 2-core AVX2-only AMD EPYC
(no AVX-512): a small CNN trains at 225 img/s in float32 and 14 img/s in mixed_bfloat16,
because oneDNN falls back to emulation — 16x slower. On a CPU with AVX512_BF16 the same
policy was 1.8x faster (docs/design.md §6). GPUs get mixed_float16 with loss scaling.
"""

from __future__ import annotations

from pathlib import Path

from keras_suite import common

tf = common.quiet_import_tensorflow()


def cpu_has_fast_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, strategy=None) -> str:
    if precision != "auto":
        return precision
    if strategy is not None and type(strategy).__name__.startswith("TPUStrategy"):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_fast_bfloat16() else "float32"
