"""secvit import: a plaintext-trained state_dict (secvit's or timm's) becomes a checkpoint
every command takes; mismatched keys and shapes are named; unsafe pickles are refused."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from secvit.checkpoint import CheckpointError, load_model
from secvit.cli import main
from secvit.importer import import_weights
from secvit.models import create_model
from secvit.secure.emulation import emulate

TIMM_ARGS = {"img_size": 32, "patch_size": 8, "num_classes": 10}


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_timm_state_dict_imports_and_runs_in_emulation(tmp_path):
    torch.manual_seed(0)
    trained = timm.create_model("deit_tiny_patch16_224", pretrained=False, **TIMM_ARGS).eval()
    torch.save({"model": trained.state_dict()}, tmp_path / "deit.pth")  # nested, as training scripts save
    meta = import_weights("deit_tiny_patch16_224", TIMM_ARGS, tmp_path / "deit.pth", tmp_path / "ckpt",
                          norm="0.5,0.25")
    model, loaded = load_model(tmp_path / "ckpt")
    assert _equal(model, trained) and loaded.normalization.std == (0.25,) * 3 and "test_accuracy" not in meta
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (emulate(model, x) - trained(x)).abs().max() < 0.05  # the secure plan's arithmetic takes it


def test_import_from_the_cli_measures_accuracy_on_the_data(tmp_path, capsys):
    torch.manual_seed(0)
    trained = create_model("vit_lite_1_2_16", num_classes=10).eval()
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    code = main(["import", "--model", "vit_lite_1_2_16", "--model-args", '{"num_classes": 10}', "--weights",
                 str(tmp_path / "w.safetensors"), "--data", "digits", "--out", str(tmp_path / "ckpt")])
    assert code == 0 and "test accuracy" in " ".join(capsys.readouterr().out.split())
    meta = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert meta["data"] == "digits" and meta["test_images"] == 360 and 0 <= meta["test_accuracy"] <= 1
    assert _equal(load_model(tmp_path / "ckpt")[0], trained)


def test_mismatched_keys_and_shapes_are_named(tmp_path):
    state = create_model("vit_lite_1_2_16", num_classes=10).state_dict()
    state.pop("head.bias")
    state["head.weight"] = torch.zeros(7, state["head.weight"].shape[1])
    state["extra.scale"] = torch.ones(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        import_weights("vit_lite_1_2_16", {"num_classes": 10}, tmp_path / "w.pt", tmp_path / "out", norm="0.5,0.5")
    message = str(e.value)
    assert "1 missing: head.bias" in message and "1 not in the architecture: extra.scale" in message
    assert "head.weight (7, " in message and not (tmp_path / "out").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_and_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys):
    torch.save({"w": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        import_weights("vit_lite_1_2_16", {}, tmp_path / "evil.pt", tmp_path / "out", norm="0.5,0.5")
    assert "code ran" not in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="act_layer"):
        import_weights("vit_lite_1_2_16", {"act_layer": "os.system"}, tmp_path / "evil.pt", tmp_path / "out",
                       norm="0.5,0.5")
    with pytest.raises(CheckpointError, match="--data SPEC"):
        import_weights("vit_lite_1_2_16", {}, tmp_path / "evil.pt", tmp_path / "out")
    with pytest.raises(CheckpointError, match="positive stds"):
        import_weights("vit_lite_1_2_16", {}, tmp_path / "evil.pt", tmp_path / "out", norm="0.5,-1")
    assert not (tmp_path / "out").exists()
