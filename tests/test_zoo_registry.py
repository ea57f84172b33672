"""The zoo registry: model cards, offline pretrained loading, refusal of bad checkpoints."""

import hashlib
import json
import re

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
        for field in ("task", "dataset", "encoding", "T", "paper_test_accuracy", "paper_dataset", "test_accuracy",
                      "train_command", "checkpoint", "sha256"):
            assert field in card, (name, field)
        assert card["train_command"].startswith("fptt-ext ")
        # the paper's figure always says which dataset it is for
        assert (card["paper_test_accuracy"] is None) == (card["paper_dataset"] is None), name


def test_paper_figures_on_another_dataset_say_so():
    assert (model_card("ostl_rmnist")["dataset"], model_card("ostl_rmnist")["paper_dataset"]) == ("fashion-mnist",
                                                                                                 "mnist")
    assert model_card("spyv4_tiny")["paper_dataset"] == "voc07+12" != model_card("spyv4_tiny")["dataset"]
    assert model_card("scnn_mnist")["paper_dataset"] == model_card("scnn_mnist")["dataset"] == "mnist"
    from fptt_ext.zoo import register_model

    with pytest.raises(ValueError, match="paper_test_accuracy needs the paper_dataset"):
        register_model("no_dataset_demo", task="classification", paper_test_accuracy=90.0)


def test_pretrained_round_trip(zoo):
    torch.manual_seed(0)
    src = create_model("srnn_addtask", hidden=8)
    publish(zoo, "srnn_addtask", src.state_dict())
    loaded = create_model("srnn_addtask", pretrained=True, hidden=8)
    for (k, a), b in zip(src.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert model_card("srnn_addtask")["test_accuracy"] == 50.0


def test_pretrained_builds_the_model_with_the_cards_neuron(zoo):
    torch.manual_seed(0)
    src = create_model("srnn_addtask", neuron="alif", hidden=8)
    publish(zoo, "srnn_addtask", src.state_dict())
    card = json.loads((zoo / "srnn_addtask.json").read_text())
    (zoo / "srnn_addtask.json").write_text(json.dumps({**card, "model_kwargs": {"neuron": "alif", "hidden": 8}}))
    loaded = create_model("srnn_addtask", pretrained=True)  # no neuron= given: the card's
    assert type(loaded.rnn.neuron).__name__ == "ALIF"
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(CheckpointError, match="does not match"):  # one given explicitly wins, and must fit
        create_model("srnn_addtask", pretrained=True, neuron="ltc")


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


def test_a_run_at_another_T_is_published_and_evaluated_at_its_T(zoo, tmp_path):
    from fptt_ext.zoo import evaluate
    from fptt_ext.zoo.publish import publish as publish_run

    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    save_file(create_model("ostl_mnist5k", hidden=(16,)).state_dict(), str(run / "model.safetensors"))
    (run / "config.json").write_text(json.dumps({"T": 5, "model_kwargs": {"hidden": [16]}}))
    card = publish_run("ostl_mnist5k", run, limit=40)
    assert card["T"] == 5 and json.loads((zoo / "ostl_mnist5k.json").read_text())["T"] == 5
    assert model_card("ostl_mnist5k")["T"] == 5  # what `fptt-ext eval` reads
    assert evaluate("ostl_mnist5k", limit=40)["test_accuracy"] == card["test_accuracy"]
    (run / "config.json").write_text(json.dumps({"T": 20, "model_kwargs": {"hidden": [16]}}))
    publish_run("ostl_mnist5k", run, limit=40)
    assert "T" not in json.loads((zoo / "ostl_mnist5k.json").read_text())  # the registered T: nothing to record


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")


def test_cli_zoo(capsys):
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    # every column starts at the same place on every line, however long the names are
    starts = {tuple(m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", line)) for line in lines}
    assert len(starts) == 1 and len(next(iter(starts))) == 4, starts
    assert main(["zoo", "list", "nothing*"]) == 2
    assert "no zoo model matches 'nothing*'" in capsys.readouterr().err
    assert main(["zoo", "show", "ostl_rmnist"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "fashion-mnist"
    assert main(["zoo", "show", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


# ----------------------------------------------------------------- the published checkpoints
PUBLISHED = [n for n in list_models() if model_card(n).get("checkpoint")]


def test_the_required_checkpoints_are_published():
    assert {"ostl_rmnist", "srnn_addtask", "scnn_fmnist_narrow"} <= set(PUBLISHED)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_checkpoint_loads_with_its_hash_checked(name):
    card = model_card(name)
    assert card["sha256"] and len(card["sha256"]) == 64 and card["test_n"] > 0
    assert card["evaluated_with"] == f"fptt-ext eval {name}"  # the full test set, no --limit
    model = create_model(name, pretrained=True)
    assert sum(p.numel() for p in model.parameters()) == card["num_params"]
    assert (card["test_accuracy"] is not None) == (card["task"] == "classification")


def test_ostl_rmnist_checkpoint_reproduces_its_card():
    from fptt_ext.zoo import evaluate

    card = model_card("ostl_rmnist")
    result = evaluate("ostl_rmnist")  # the full Fashion-MNIST test set, rate-coded, T = 20
    assert result["n"] == card["test_n"] == 10_000
    assert abs(result["test_accuracy"] - card["test_accuracy"]) <= 0.3
    assert card["test_accuracy"] >= 89.0  # the goal this checkpoint was published for


def test_srnn_addtask_checkpoint_reproduces_its_card():
    from fptt_ext.zoo import evaluate

    card = model_card("srnn_addtask")
    result = evaluate("srnn_addtask")  # 1,000 fresh sequences of T = 1000 from a fixed seed: deterministic
    assert result["n"] == card["test_n"] == 1000
    assert result["test_mse"] == pytest.approx(card["test_mse"], abs=2e-4)
    assert card["test_mse"] < 1 / 6  # below a constant prediction of 1


def test_checkpoint_loads_into_the_spikingjelly_backend_with_the_same_outputs():
    from spikingjelly.activation_based import functional

    a = create_model("ostl_rmnist", pretrained=True).eval()
    b = create_model("ostl_rmnist", pretrained=True, backend="spikingjelly", step_mode="m").eval()
    x = (torch.rand(20, 4, 784) < 0.3).float()
    with torch.no_grad():
        out_a = torch.stack([a(x_t) for x_t in x])
        out_b = b(x)
        functional.reset_net(b)
    torch.testing.assert_close(out_a, out_b)


def test_cli_eval_of_a_zoo_model(capsys):
    assert main(["eval", "srnn_addtask", "--limit", "1"]) == 0
    assert "test MSE" in capsys.readouterr().out
