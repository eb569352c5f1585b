"""The model: presets and their parameter counts, config validation, MoE, KV cache, padding, ties."""

from pathlib import Path

import pytest
import torch

from stages.config import ConfigError, from_dict
from stages.config.model import ModelConfig, load_model_config
from stages.lm.model import KVCache, MiniMindTTS
from stages.lm.size import count_parameters, describe, parameter_count
from stages.lm.vocab import Vocab

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "model"
VOCAB = Vocab(n_text=2000, n_speech=4096)
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)


@pytest.mark.parametrize("preset", ["tiny", "small", "26m", "104m", "moe"])
def test_every_preset_loads_and_its_parameter_count_matches_the_formula(preset):
    config = load_model_config(PRESETS / f"{preset}.yaml")
    with torch.device("meta"):  # a 100M model, counted without allocating it
        model = MiniMindTTS(config, VOCAB.size)
    assert count_parameters(model) == parameter_count(config, VOCAB.size)["total"]
    assert (PRESETS / f"{preset}.yaml").read_text().startswith("#")


@pytest.mark.parametrize("preset, millions", [("26m", 26), ("104m", 104)])
def test_named_presets_have_their_named_size(preset, millions):
    total = parameter_count(load_model_config(PRESETS / f"{preset}.yaml"), VOCAB.size)["total"]
    assert abs(total / 1e6 - millions) / millions < 0.05


def test_26m_preset_has_the_issue_shape():
    config = load_model_config(PRESETS / "26m.yaml")
    assert (config.dim, config.n_layers, config.n_heads, config.n_kv_heads, config.ffn_dim) == (512, 8, 8, 2, 1408)
    assert (load_model_config(PRESETS / "104m.yaml").dim, load_model_config(PRESETS / "104m.yaml").n_layers) == (768, 16)


def test_formula_counts_untied_head_and_moe_active_parameters():
    tied = parameter_count(SMALL, VOCAB.size)
    untied = parameter_count(ModelConfig(**{**SMALL.__dict__, "tie_embeddings": False}), VOCAB.size)
    assert untied["total"] - tied["total"] == VOCAB.size * SMALL.dim
    moe = ModelConfig(**{**SMALL.__dict__, "n_experts": 4, "experts_per_token": 2, "n_shared_experts": 1})
    counts = parameter_count(moe, VOCAB.size)
    assert counts["total"] - counts["active"] == SMALL.n_layers * 2 * 3 * SMALL.dim * SMALL.ffn_dim
    assert count_parameters(MiniMindTTS(moe, VOCAB.size)) == counts["total"]
    assert "active per token" in describe(moe, VOCAB.size)


@pytest.mark.parametrize("data, key", [
    ({"dim": 64, "n_heads": 5}, "n_heads"),
    ({"n_heads": 8, "n_kv_heads": 3}, "n_kv_heads"),
    ({"n_experts": 1}, "n_experts"),
    ({"n_experts": 2, "experts_per_token": 3}, "experts_per_token"),
    ({"hidden": 3}, "unknown key"),
    ({"dim": "big"}, "dim"),
])
def test_invalid_model_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(ModelConfig, data, "model")


def test_tied_and_untied_embeddings():
    tied = MiniMindTTS(SMALL, 300)
    assert tied.lm_head.weight is tied.embed.weight
    untied = MiniMindTTS(ModelConfig(**{**SMALL.__dict__, "tie_embeddings": False}), 300)
    assert untied.lm_head.weight is not untied.embed.weight


def test_moe_forward_adds_a_load_balancing_loss_that_trains_the_router():
    torch.manual_seed(0)
    config = ModelConfig(**{**SMALL.__dict__, "n_experts": 4, "experts_per_token": 2, "n_shared_experts": 1,
                            "aux_loss_weight": 0.1})
    model = MiniMindTTS(config, 300)
    ids = torch.randint(0, 300, (2, 16))
    targets = torch.randint(0, 300, (2, 16))
    out = model(ids, targets)
    assert out.logits.shape == (2, 16, 300)
    assert torch.isfinite(out.aux_loss) and out.aux_loss > 0.5  # 1 when routing is uniform
    torch.testing.assert_close(out.loss, out.ce_loss + 0.1 * out.aux_loss)
    out.aux_loss.backward(retain_graph=True)
    assert model.blocks[0].ffn.router.weight.grad.abs().sum() > 0
    model.zero_grad()
    out.loss.backward()
    # every expert gets a gradient, even one that no token chose (DDP / ZeRO need one)
    for expert in model.blocks[0].ffn.experts:
        assert expert.up_proj.weight.grad is not None


def test_moe_output_does_not_depend_on_other_tokens_in_the_batch():
    torch.manual_seed(0)
    model = MiniMindTTS(ModelConfig(**{**SMALL.__dict__, "n_experts": 4}), 300).eval()
    ids = torch.randint(0, 300, (3, 12))
    torch.testing.assert_close(model(ids).logits[1:2], model(ids[1:2]).logits)


def test_kv_cached_logits_equal_full_forward_logits():
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, 300).eval()
    ids = torch.randint(0, 300, (2, 40))
    full = model(ids).logits
    cache = KVCache(SMALL, batch=2, max_len=40)
    pieces = [model(ids[:, :15], cache=cache).logits]           # prefill
    pieces += [model(ids[:, i:i + 1], cache=cache).logits for i in range(15, 30)]   # one token at a time
    pieces.append(model(ids[:, 30:], cache=cache).logits)       # and a chunk after cached tokens
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 40


def test_left_padding_with_row_positions_matches_the_unpadded_row():
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, 300).eval()
    ids = torch.randint(1, 300, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, :6] = False
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    padded = model(ids, attention_mask=mask, positions=positions).logits
    torch.testing.assert_close(padded[1, 6:], model(ids[1:, 6:]).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[0], model(ids[:1]).logits[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(padded).all()  # padding queries see themselves: no NaN rows


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = MiniMindTTS(ModelConfig(**{**SMALL.__dict__, "dropout": 0.5}), 300)
    ids = torch.randint(0, 300, (1, 10))
    assert not torch.equal(model.train()(ids).logits, model(ids).logits)
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)


def test_positions_beyond_max_seq_len_are_refused():
    model = MiniMindTTS(SMALL, 300)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, SMALL.max_seq_len + 1, dtype=torch.long))
