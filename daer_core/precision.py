"""Which precision a device computes natively, and how recurrent layers cope with bf16.

Used by training (``train.bf16: auto``), scoring (``evaluate.bf16: auto``) and by encoder
plugins that run an ``nn.LSTM``/``nn.GRU`` under the trainer's autocast.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: CUDA with bf16 (Ampere and
    newer), or an x86 CPU with AMX-BF16 or AVX512-BF16. Elsewhere (AVX2 CPUs, ARM) torch
    emulates bf16 products, far slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        caps = torch.cpu.get_capabilities()
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return False


def _cpu_bf16_emulated_autocast(device: torch.device) -> bool:
    return (device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not bf16_native("cpu"))


def run_recurrent(rnn: nn.Module, inputs: torch.Tensor | PackedSequence
                  ) -> tuple[torch.Tensor | PackedSequence, object]:
    """``rnn(inputs)``, in float32 when bf16 autocast is on for a CPU without native bf16.

    *Why:* CPU autocast runs recurrent layers through oneDNN in bf16, and oneDNN has no bf16
    LSTM for such CPUs: on a padded batch it fails with "could not create a primitive
    descriptor", deep inside torch. Emulated bf16 would be slower than float32 there anyway,
    so ``train.bf16: true`` on such a CPU still trains, with the recurrent layer in float32
    (its output is float32; the layers after it autocast as usual).
    """
    data = inputs.data if isinstance(inputs, PackedSequence) else inputs
    if not _cpu_bf16_emulated_autocast(data.device):
        return rnn(inputs)
    with torch.autocast("cpu", enabled=False):
        return rnn(inputs.float())
