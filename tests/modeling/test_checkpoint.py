"""`FOCUSCheckpointer`: safe loading of `.pth`, `.pkl` and `.safetensors` (no file can run code), the member
hook `checkpoint_filter_fn`, one-line errors for missing, corrupt and unsafe files."""
import builtins
import io
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from focus.errors import UnsafeCheckpointError, UserError
from focus.modeling.checkpoint import FOCUSCheckpointer, load_state_file, safe_pickle_load


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 2)
        self.register_buffer("running", torch.zeros(2))


class _FilteredNet(_Net):
    def checkpoint_filter_fn(self, state_dict):
        """timm-style: strip the prefixes of a DDP / torch.compile'd training script, drop the extra keys."""
        out = {}
        for k, v in state_dict.items():
            for prefix in ("module.", "_orig_mod."):
                k = k[len(prefix):] if k.startswith(prefix) else k
            if not k.startswith("aux."):
                out[k] = v
        return out


def _reference():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.running.copy_(torch.tensor([1.5, -2.0]))
    return net


class _WritesAFile:
    """Unpickling this runs `exec`, which would create `target`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return builtins.exec, (f"open({self.target!r}, 'w').write('pwned')",)


def _assert_equal_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("fmt", ["pth_bare", "pth_wrapped", "pkl_bare", "pkl_wrapped", "pkl_ordered", "safetensors"])
def test_loads_every_format(tmp_path, fmt):
    ref = _reference()
    sd = ref.state_dict()
    path = tmp_path / ("w." + fmt.split("_")[0])
    if fmt == "pth_bare":
        torch.save(sd, path)
    elif fmt == "pth_wrapped":
        torch.save({"model": sd, "iteration": 7, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(dict(sd), str(path))
    else:
        arrays = {k: v.numpy() for k, v in sd.items()}
        payload = {"model": arrays, "iteration": np.int64(3)} if fmt == "pkl_wrapped" else arrays
        if fmt == "pkl_ordered":
            payload = {"model": OrderedDict(arrays)}
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2 if fmt == "pkl_bare" else 5)
    target = _Net()
    extra = FOCUSCheckpointer(target).load(str(path))
    _assert_equal_state(target, ref)
    if fmt == "pth_wrapped":
        assert extra["iteration"] == 7


def test_detectron2_pkl_rules_kept(tmp_path):
    """A `.pkl` with detectron2's `__author__` tag is taken as is; a Caffe2-style one (no model prefix) goes
    through detectron2's name matching (here: `_momentum` blobs dropped, names matched by suffix)."""
    ref = _reference()
    arrays = {k: v.numpy() for k, v in ref.state_dict().items()}
    with open(tmp_path / "d2.pkl", "wb") as f:
        pickle.dump({"model": arrays, "__author__": "focus", "matching_heuristics": False}, f)
    target = _Net()
    FOCUSCheckpointer(target).load(str(tmp_path / "d2.pkl"))
    _assert_equal_state(target, ref)

    blobs = {"weight": arrays["backbone.weight"], "bias": arrays["backbone.bias"],
             "weight_momentum": np.zeros((2, 3), np.float32)}
    with open(tmp_path / "c2.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    target = _Net()
    FOCUSCheckpointer(target).load(str(tmp_path / "c2.pkl"))
    assert torch.equal(target.backbone.weight, ref.backbone.weight)


def test_checkpoint_filter_fn_applied_before_loading(tmp_path, caplog):
    ref = _reference()
    sd = {("module._orig_mod." if i % 2 else "module.") + k: v for i, (k, v) in enumerate(ref.state_dict().items())}
    sd["aux.head.weight"] = torch.zeros(4)
    for suffix in (".pth", ".pkl", ".safetensors"):
        path = tmp_path / f"prefixed{suffix}"
        if suffix == ".pth":
            torch.save({"state_dict": 1, "model": sd}, path)
        elif suffix == ".pkl":
            with open(path, "wb") as f:
                pickle.dump({"model": {k: v.numpy() for k, v in sd.items()}}, f)
        else:
            from safetensors.torch import save_file

            save_file(sd, str(path))
        target = _FilteredNet()
        caplog.clear()
        FOCUSCheckpointer(target).load(str(path))
        _assert_equal_state(target, ref)
        assert "Checkpoint load summary" not in caplog.text  # the hook removed every extra key


@pytest.mark.parametrize("how", ["torch_save", "plain_pickle_pth", "pkl"])
def test_malicious_pickle_refused(tmp_path, how):
    target_file = tmp_path / "pwned.txt"
    payload = {"model": {"backbone.weight": torch.zeros(2, 3)}, "evil": _WritesAFile(target_file)}
    if how == "torch_save":
        path = tmp_path / "evil.pth"
        torch.save(payload, path)
    else:
        path = tmp_path / ("evil.pth" if how == "plain_pickle_pth" else "evil.pkl")
        payload["model"] = {"backbone.weight": np.zeros((2, 3), np.float32)}
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    # (test_malicious_payload_is_live shows that an ordinary unpickler would write the file)
    with pytest.raises(UnsafeCheckpointError) as err:
        FOCUSCheckpointer(_Net()).load(str(path))
    msg = str(err.value)
    assert "evil." in msg and "exec" in msg and "\n" not in msg
    assert not target_file.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_state_file(str(path))
    assert not target_file.exists()


def test_malicious_payload_is_live(tmp_path):
    """Control for the test above: the same bytes, loaded by plain pickle, do write the file."""
    target_file = tmp_path / "pwned.txt"
    data = pickle.dumps({"evil": _WritesAFile(target_file)})
    pickle.loads(data)
    assert target_file.read_text() == "pwned"


@pytest.mark.parametrize("payload", [torch.zeros(2), nn.Linear(2, 2)], ids=["torch_tensor", "module"])
def test_pkl_with_torch_objects_refused(tmp_path, payload):
    path = tmp_path / "t.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": payload}}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"t\.pkl.*torch"):
        FOCUSCheckpointer(_Net()).load(str(path))


def test_pth_with_whole_module_refused(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(_Net(), path)
    with pytest.raises(UnsafeCheckpointError, match=r"module\.pth.*_Net"):
        FOCUSCheckpointer(_Net()).load(str(path))


@pytest.mark.parametrize("suffix", [".pth", ".pkl", ".safetensors"])
def test_missing_and_corrupt_files(tmp_path, suffix):
    with pytest.raises(UserError, match="not found.*nope" + suffix.replace(".", r"\.")):
        FOCUSCheckpointer(_Net()).load(str(tmp_path / ("nope" + suffix)))
    good = tmp_path / ("good" + suffix)
    sd = _reference().state_dict()
    if suffix == ".pth":
        torch.save(sd, good)
    elif suffix == ".pkl":
        with open(good, "wb") as f:
            pickle.dump({k: v.numpy() for k, v in sd.items()}, f)
    else:
        from safetensors.torch import save_file

        save_file(dict(sd), str(good))
    for name, data in [("truncated", good.read_bytes()[: len(good.read_bytes()) // 2]),
                       ("garbage", b"this is not a checkpoint at all\n" * 10), ("empty", b"")]:
        bad = tmp_path / (name + suffix)
        bad.write_bytes(data)
        with pytest.raises(UserError) as err:
            FOCUSCheckpointer(_Net()).load(str(bad))
        assert bad.name in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(UserError, match=r"list\.pth.*list"):
        FOCUSCheckpointer(_Net()).load(str(tmp_path / "list.pth"))


def test_safe_pickle_plain_values(tmp_path):
    obj = {"a": [1, 2.5, "x", None, True, (3, 4)], "b": {1, 2}, "c": np.arange(6, dtype=np.int16).reshape(2, 3),
           "d": np.float32(1.5), "e": b"bytes", "f": np.array(["s"]), "g": 1 + 2j}
    for protocol in range(0, 6):
        out = safe_pickle_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
        assert out["a"] == obj["a"] and out["b"] == obj["b"] and out["e"] == obj["e"] and out["g"] == obj["g"]
        np.testing.assert_array_equal(out["c"], obj["c"])
        assert out["c"].dtype == np.int16 and out["d"] == np.float32(1.5)
