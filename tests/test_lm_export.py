"""Export: our safetensors + config.json round trip, and the transformers Llama layout giving our logits."""

import json

import pytest
import torch

from stages.config import ConfigError
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.export import export_hf, load_model, read_config, save_model
from stages.lm.generate import Request, generate
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab

VOCAB = Vocab(n_text=40, n_speech=4096, speakers=("awb", "slt"))
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)
GENERATION = GenerationConfig(min_len_ratio=3.5, max_len_ratio=8.0, seed=5)


def build(**changes) -> MiniMindTTS:
    torch.manual_seed(0)
    return MiniMindTTS(ModelConfig(**{**SMALL.__dict__, **changes}), VOCAB.size).eval()


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False}, {"n_experts": 4, "n_shared_experts": 1}])
def test_save_and_load_round_trip(tmp_path, changes):
    model = build(**changes)
    tokenizer = tmp_path / "tokenizer.model"
    tokenizer.write_bytes(b"sentencepiece bytes")
    save_model(model, VOCAB, GENERATION, tmp_path / "model", extra_files=[tokenizer])
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors",
                                                                      "tokenizer.model"]
    loaded = load_model(tmp_path / "model")
    assert loaded.vocab == VOCAB and loaded.generation == GENERATION and loaded.model.config == model.config
    assert (loaded.model.lm_head.weight is loaded.model.embed.weight) == model.config.tie_embeddings
    ids = torch.randint(0, VOCAB.size, (2, 30))
    torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits, rtol=0, atol=0)
    request = [Request((1, 2, 3), speaker="slt")]
    assert generate(loaded.model, loaded.vocab, request, loaded.generation) == generate(model, VOCAB, request, GENERATION)


def test_load_in_bf16_or_int8(tmp_path):
    save_model(build(), VOCAB, GENERATION, tmp_path / "model")
    bf16 = load_model(tmp_path / "model", dtype=torch.bfloat16).model
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and bf16.lm_head.weight is bf16.embed.weight
    assert load_model(tmp_path / "model", quantize="int8").model.embed.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="fp32 weights"):
        load_model(tmp_path / "model", dtype=torch.bfloat16, quantize="int8")


def test_config_json_is_validated(tmp_path):
    save_model(build(), VOCAB, GENERATION, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["vocab"]["layout"]["speech_offset"] == VOCAB.speech_offset
    config["model"]["hidden"] = 1
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="hidden"):
        read_config(tmp_path / "model")


def test_save_refuses_a_model_of_another_vocabulary(tmp_path):
    with pytest.raises(ValueError, match="embeddings"):
        save_model(MiniMindTTS(SMALL, VOCAB.size + 1), VOCAB, GENERATION, tmp_path / "model")
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("tie", [True, False])
def test_hugging_face_llama_export_gives_our_logits(tmp_path, tie):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    model = build(tie_embeddings=tie)
    export_hf(model, VOCAB, GENERATION, tmp_path / "hf")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, VOCAB.size, (2, 50))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)
    sidecar = json.loads((tmp_path / "hf" / "minimind_tts.json").read_text())
    assert Vocab.from_dict(sidecar["vocab"]) == VOCAB


def test_hugging_face_export_refuses_moe(tmp_path):
    with pytest.raises(ValueError, match="MoE"):
        export_hf(build(n_experts=4), VOCAB, GENERATION, tmp_path / "hf")
