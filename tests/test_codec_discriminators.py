"""The codec's critics: the DAC critic's shapes, official key names, losses and gradients; the critics chosen by name.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_codec_discriminators.py -q
"""

from __future__ import annotations

import pytest
import torch

from stages.codec.discriminators import DACBands, DACCritic, DACPeriod, Discriminators

WIDTH = 1 / 16  # 2-64 channels: the shapes and keys of the full critic at a fraction of the cost


@pytest.fixture(scope="module")
def audio() -> torch.Tensor:
    torch.manual_seed(0)
    return 0.1 * torch.randn(2, 4800)


def test_dac_critic_has_five_period_and_three_band_critics_with_the_official_feature_counts(audio):
    critic = DACCritic(WIDTH)
    maps = critic(audio)
    assert [type(d) for d in critic.discriminators] == [DACPeriod] * 5 + [DACBands] * 3
    for period, fmap in zip((2, 3, 5, 7, 11), maps[:5]):
        assert len(fmap) == 5 + 1                                         # every conv, then the score
        padded = 4800 + period - 4800 % period                             # a whole period when already a multiple
        assert fmap[0].shape == (2, 4, -(-padded // period // 3), period)  # 1 -> max(4, 32 x WIDTH) channels, stride 3
        assert fmap[-1].shape[:2] == (2, 1) and fmap[-1].shape[-1] == period
    for n_fft, fmap in zip((2048, 1024, 512), maps[5:]):
        assert len(fmap) == 5 * 5 + 1                                      # five convs per band, then the score
        frames, bins = 1 + 4800 // (n_fft // 4), n_fft // 2 + 1
        assert fmap[0].shape == (2, 4, frames, int(0.1 * bins))            # the first band (real + imaginary in)
        assert fmap[-1].shape[:3] == (2, 1, frames)


def test_dac_critic_keys_and_widths_are_the_official_ones():
    shapes = {k: tuple(v.shape) for k, v in Discriminators(4, critics=("dac",)).state_dict().items()}
    assert shapes["dac.discriminators.0.convs.0.0.weight_v"] == (32, 1, 5, 1)
    assert shapes["dac.discriminators.4.convs.4.0.weight_v"] == (1024, 1024, 5, 1)
    assert shapes["dac.discriminators.0.conv_post.weight_g"] == (1, 1, 1, 1)
    assert shapes["dac.discriminators.5.band_convs.0.0.0.weight_v"] == (32, 2, 3, 9)
    assert shapes["dac.discriminators.7.band_convs.4.4.0.weight_v"] == (32, 32, 3, 3)
    assert shapes["dac.discriminators.7.conv_post.bias"] == (1,)
    assert not any(k.startswith(("multiperioddisc.", "multiresddisc.")) for k in shapes)


def test_dac_critic_sees_audio_without_its_dc_offset_and_gain(audio):
    critic = DACCritic(WIDTH)
    with torch.no_grad():
        a, b = critic(audio), critic(3.0 * audio + 0.2)
    for fa, fb in zip(a, b):
        assert torch.allclose(fa[-1], fb[-1], atol=1e-4)


def test_dac_least_squares_losses_with_silent_scores_count_one_per_sub_critic(audio):
    critic = DACCritic(WIDTH)
    with torch.no_grad():
        for d in critic.discriminators:   # score layers at zero: real scores 0 cost (1 - 0)^2, fake ones 0^2
            d.conv_post.weight_g.zero_()
            d.conv_post.bias.zero_()
    assert critic.critic_loss(audio, audio.flip(-1)).item() == pytest.approx(8.0)
    gan, fm = critic.generator_loss(audio, audio)
    assert gan.item() == pytest.approx(8.0) and fm.item() == pytest.approx(0.0, abs=1e-6)


def test_dac_critic_loss_trains_every_critic_weight_and_the_generator_loss_reaches_only_the_fake(audio):
    critic = DACCritic(WIDTH)
    critic.critic_loss(audio, audio.roll(100, -1)).backward()
    for name, p in critic.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    critic.zero_grad()
    fake, real = audio.roll(100, -1).requires_grad_(), audio.clone().requires_grad_()
    gan, fm = critic.generator_loss(real, fake)
    (gan + fm).backward()
    assert fm.item() > 0 and fake.grad.abs().sum() > 0 and real.grad is None


def test_critics_are_built_by_name_under_their_official_prefixes():
    every = Discriminators(4, WIDTH, ("mpd", "mrd", "dac"))
    assert [name for name, _ in every.critics()] == ["mpd", "mrd", "dac"]
    assert {k.split(".")[0] for k in every.state_dict()} == {"multiperioddisc", "multiresddisc", "dac"}
    assert {k.split(".")[0] for k in Discriminators(4, WIDTH).state_dict()} == {"multiperioddisc", "multiresddisc"}
    with pytest.raises(ValueError, match="unknown critic"):
        Discriminators(4, WIDTH, ("mpd", "msd"))


@pytest.mark.parametrize("name", ["mpd", "mrd", "dac"])
def test_each_critic_gives_finite_fp32_losses_under_bf16_autocast(audio, name):
    (_, critic), = Discriminators(4, WIDTH, (name,)).critics()
    cond = torch.tensor([1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = critic.critic_loss(audio, audio.roll(7, -1), cond)
        gan, fm = critic.generator_loss(audio, audio.roll(7, -1).requires_grad_(), cond)
    assert all(t.dtype == torch.float32 and torch.isfinite(t) for t in (loss, gan, fm))
    loss.backward()
