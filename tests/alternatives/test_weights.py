"""Local weight files: reading the formats, by-name / by-position matching, package lookup."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from daer_core.errors import ConfigError
from daer_core.weights import (WeightsError, find_package_dir, find_package_weights,
                                   load_into, load_weights_file, map_by_position,
                                   read_state_dict)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def renamed(state):
    """The same tensors in the same order under other names (like another code base)."""
    return OrderedDict((f"other_{i}", v.clone()) for i, v in enumerate(state.values()))


def test_files_load_by_name_and_position(tmp_path):
    src = small_net()
    with torch.no_grad():
        src[0].weight.add_(1.0)
    state = src.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save(renamed(state), tmp_path / "renamed.pth")
    a, b = small_net(), small_net()
    load_weights_file(a, tmp_path / "w.safetensors", "by-name")
    load_weights_file(b, tmp_path / "renamed.pth", "by-position")
    for net in (a, b):
        assert torch.equal(net[0].weight, src[0].weight)


def test_by_position_refuses_safetensors(tmp_path):
    state = small_net().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="sorted by name"):
        load_weights_file(small_net(), tmp_path / "w.safetensors", "by-position", key="k.w")


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="my.key.weights_path: .*nope.pth"):
        load_weights_file(small_net(), tmp_path / "nope.pth", "by-name",
                          key="my.key.weights_path")


def test_by_position_loads_renamed_tensors():
    src, dst = small_net(), nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                                          nn.Linear(4, 2))
    with torch.no_grad():
        src[0].weight.add_(1.0)
    report = load_into(dst, renamed(src.state_dict()), "by-position")
    assert report.loaded == len(src.state_dict())
    assert torch.equal(dst[0].weight, src[0].weight)


def test_by_position_reports_first_shape_mismatch():
    target = small_net().state_dict()
    state = renamed(target)
    state["other_3"] = torch.zeros(5)  # the batch-norm bias, with the wrong width
    with pytest.raises(WeightsError, match=r"tensor #3: file 'other_3' has shape \[5\] but model "
                                           r"'1.bias' has \[4\]"):
        map_by_position(state, target)


def test_by_position_reports_count_mismatch():
    target = small_net().state_dict()
    state = renamed(target)
    state.popitem(last=False)
    with pytest.raises(WeightsError, match=r"file has \d+ and the model \d+"):
        map_by_position(state, target)


def test_by_position_allows_missing_optional_head():
    net = small_net()
    head = ["3.weight", "3.bias"]
    state = renamed(OrderedDict((k, v) for k, v in net.state_dict().items() if k not in head))
    before = net[3].weight.clone()
    report = load_into(net, state, "by-position", optional=head)
    assert report.kept_init == head and torch.equal(net[3].weight, before)


def test_by_name_loads_and_explains_failures():
    src, dst = small_net(), small_net()
    with torch.no_grad():
        src[3].bias.fill_(7.0)
    load_into(dst, src.state_dict(), "by-name")
    assert torch.all(dst[3].bias == 7.0)
    with pytest.raises(WeightsError, match="try key_mapping: by-position"):
        load_into(dst, renamed(src.state_dict()), "by-name")
    bad = src.state_dict()
    bad["3.weight"] = torch.zeros(3, 4)
    with pytest.raises(WeightsError, match=r"'3.weight' file \[3, 4\] vs model \[2, 4\]"):
        load_into(dst, bad, "by-name")


def test_package_lookup_errors_are_clear():
    with pytest.raises(WeightsError, match=r"weights_package: package 'no-such-weights-pkg' is "
                                           r"not installed.*daer\[pretrained\]"):
        find_package_weights("no-such-weights-pkg")
    # pytest ships no weight files and no config.json: both lookups fail with the package name
    with pytest.raises(WeightsError, match="'pytest' ships no weight file"):
        find_package_weights("pytest")
    with pytest.raises(WeightsError, match="'pytest' ships no directory with config.json"):
        find_package_dir("pytest")


def test_reader_unwraps_and_strips_module_prefix(tmp_path):
    state = small_net().state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
               tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="k.w: cannot read weight file .*bad.pth"):
        read_state_dict(tmp_path / "bad.pth", key="k.w")
