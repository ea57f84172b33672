"""The zoo registry: model cards, offline pretrained loading, refusal of bad checkpoints."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from fptt_ext.cli import main
from fptt_ext.zoo import CheckpointError, create_model, list_models, model_card


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("FPTT_EXT_ZOO", str(tmp_path))
    return tmp_path


def publish(zoo, name, state):
    path = zoo / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (zoo / f"{name}.json").write_text(json.dumps({"checkpoint": path.name, "sha256": digest, "test_accuracy": 50.0}))
    return path


def test_cards_have_the_documented_fields():
    for name in list_models():
        card = model_card(name)
        for field in ("task", "dataset", "encoding", "T", "paper_test_accuracy", "test_accuracy",
                      "train_command", "checkpoint", "sha256"):
            assert field in card, (name, field)
        assert card["train_command"].startswith(("fptt-ext ", "python examples/train_events.py "))


def test_pretrained_round_trip(zoo):
    torch.manual_seed(0)
    src = create_model("srnn_addtask", hidden=8)
    publish(zoo, "srnn_addtask", src.state_dict())
    loaded = create_model("srnn_addtask", pretrained=True, hidden=8)
    for (k, a), b in zip(src.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert model_card("srnn_addtask")["test_accuracy"] == 50.0


def test_no_checkpoint_says_how_to_train_one(zoo):
    with pytest.raises(CheckpointError, match="fptt-ext addtask"):
        create_model("srnn_addtask", pretrained=True)


def test_tampered_checkpoint_is_refused(zoo):
    path = publish(zoo, "srnn_addtask", create_model("srnn_addtask", hidden=8).state_dict())
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        create_model("srnn_addtask", pretrained=True, hidden=8)


def test_wrong_architecture_is_refused_with_the_differing_keys(zoo):
    publish(zoo, "srnn_addtask", create_model("srnn_addtask", hidden=8).state_dict())
    with pytest.raises(CheckpointError, match="different shapes") as err:
        create_model("srnn_addtask", pretrained=True, hidden=16)
    assert "rnn.fc.weight" in str(err.value)
    publish(zoo, "srnn_addtask", {"other.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="unexpected keys \\['other.weight'\\]"):
        create_model("srnn_addtask", pretrained=True, hidden=8)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")


def test_cli_zoo(capsys):
    assert main(["zoo", "list"]) == 0
    assert "ostl_rmnist" in capsys.readouterr().out
    assert main(["zoo", "show", "ostl_rmnist"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "fashion-mnist"
    assert main(["zoo", "show", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
