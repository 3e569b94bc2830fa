"""Recurrent layers under bf16 autocast on a CPU whose bf16 is emulated (daer_core.precision)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from daer_core import precision


def test_lstm_runs_in_float32_under_bf16_autocast_where_bf16_is_emulated(monkeypatch):
    # oneDNN has no bf16 LSTM on such CPUs: the padded batch used to fail deep inside torch
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, batch_first=True)
    x = torch.randn(3, 7, 6)
    expected, _ = lstm(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, _ = precision.run_recurrent(lstm, x)
        packed_out, _ = precision.run_recurrent(
            lstm, pack_padded_sequence(x, [7, 4, 2], batch_first=True, enforce_sorted=False))
    assert padded.dtype == torch.float32
    torch.testing.assert_close(padded, expected, rtol=0, atol=0)
    packed, _ = pad_packed_sequence(packed_out, batch_first=True)
    assert packed.dtype == torch.float32
    torch.testing.assert_close(packed[0], expected[0], rtol=1e-6, atol=1e-6)


def test_bf16_input_is_widened_and_autocast_paused_only_where_bf16_is_emulated(monkeypatch):
    seen = []

    def recorder(inputs):
        seen.append((inputs.dtype, torch.is_autocast_enabled("cpu")))
        return inputs, None

    x = torch.randn(2, 3, 4).bfloat16()
    for native in (False, True):
        monkeypatch.setattr(precision, "bf16_native", lambda device, n=native: n)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            precision.run_recurrent(recorder, x)
        precision.run_recurrent(recorder, x)            # no autocast: left alone
    assert seen == [(torch.float32, False), (torch.bfloat16, False),
                    (torch.bfloat16, True), (torch.bfloat16, False)]
