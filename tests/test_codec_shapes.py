"""Full-size WavTokenizer models have the official keys and shapes; batching never changes codes or audio.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_codec_shapes.py -q

The manifest below is written from the official model printout (WavTokenizer 75/s: SEANet widths
32..512, LSTM 512, Vocos 768 x 12) and weight norm's `weight_g` / `weight_v` layout, independently of our
model code. The 40/s model differs only in its encoder strides and ISTFT size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from stages.codec import WavTokenizer, load_codec
from stages.codec.loader import arch_from_yaml_tree, read_arch

FIXTURE = Path(__file__).parent / "fixtures" / "wavtokenizer"
ENC, DEC = "feature_extractor.encodec.encoder.model", "feature_extractor.encodec.decoder.model"
CODEBOOK = "feature_extractor.encodec.quantizer.vq.layers.0._codebook"


def official_init_args(downsamples: list[int], n_fft: int, hop: int) -> dict:
    """`model.init_args` of the official wavtokenizer_smalldata_frame{40,75}_..._attn.yaml (model part only)."""
    return {"sample_rate": 24000, "feature_extractor": {
        "class_path": "decoder.feature_extractors.EncodecFeatures",
        "init_args": {"encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6], "train_codebooks": True,
                      "num_quantizers": 1, "dowmsamples": downsamples, "vq_bins": 4096, "vq_kmeans": 200}},
        "backbone": {"class_path": "decoder.models.VocosBackbone", "init_args": {
            "input_channels": 512, "dim": 768, "intermediate_dim": 2304, "num_layers": 12, "adanorm_num_embeddings": 4}},
        "head": {"class_path": "decoder.heads.ISTFTHead", "init_args": {
            "dim": 768, "n_fft": n_fft, "hop_length": hop, "padding": "same"}}}


def conv(prefix: str, c_in: int, c_out: int, k: int, transposed: bool = False) -> dict:
    inner = f"{prefix}.convtr.convtr" if transposed else f"{prefix}.conv.conv"
    return {f"{inner}.weight_g": (c_in if transposed else c_out, 1, 1),
            f"{inner}.weight_v": (c_in, c_out, k) if transposed else (c_out, c_in, k), f"{inner}.bias": (c_out,)}


def resblock(prefix: str, dim: int) -> dict:
    return {**conv(f"{prefix}.block.1", dim, dim // 2, 3), **conv(f"{prefix}.block.3", dim // 2, dim, 1),
            **conv(f"{prefix}.shortcut", dim, dim, 1)}


def lstm(prefix: str, dim: int) -> dict:
    return {f"{prefix}.lstm.{kind}_l{layer}": (4 * dim, dim) if kind.startswith("weight") else (4 * dim,)
            for layer in (0, 1) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def official_manifest(encoder_kernels: tuple[int, ...], n_fft: int) -> dict:
    m = {**conv(f"{ENC}.0", 1, 32, 7), **lstm(f"{ENC}.13", 512), **conv(f"{ENC}.15", 512, 512, 7)}
    for i, (width, k) in enumerate(zip((32, 64, 128, 256), encoder_kernels)):
        m |= resblock(f"{ENC}.{1 + 3 * i}", width) | conv(f"{ENC}.{3 + 3 * i}", width, 2 * width, k)
    m |= {f"{CODEBOOK}.inited": (1,), f"{CODEBOOK}.cluster_size": (4096,), f"{CODEBOOK}.embed": (4096, 512),
          f"{CODEBOOK}.embed_avg": (4096, 512)}
    m |= conv(f"{DEC}.0", 512, 512, 7) | lstm(f"{DEC}.1", 512) | conv(f"{DEC}.15", 32, 1, 7)
    for i, (width, k) in enumerate(zip((512, 256, 128, 64), (16, 10, 8, 4))):  # decoder ratios are fixed [8,5,4,2]
        m |= conv(f"{DEC}.{3 + 3 * i}", width, width // 2, k, transposed=True) | resblock(f"{DEC}.{4 + 3 * i}", width // 2)
    d, h = 768, 2304
    m |= {"backbone.embed.weight": (d, 512, 7), "backbone.embed.bias": (d,), "backbone.norm.scale.weight": (4, d),
          "backbone.norm.shift.weight": (4, d), "backbone.final_layer_norm.weight": (d,),
          "backbone.final_layer_norm.bias": (d,), "backbone.pos_net.5.weight": (d,), "backbone.pos_net.5.bias": (d,)}
    for i in range(12):
        p = f"backbone.convnext.{i}"
        m |= {f"{p}.gamma": (d,), f"{p}.dwconv.weight": (d, 1, 7), f"{p}.dwconv.bias": (d,),
              f"{p}.norm.scale.weight": (4, d), f"{p}.norm.shift.weight": (4, d), f"{p}.pwconv1.weight": (h, d),
              f"{p}.pwconv1.bias": (h,), f"{p}.pwconv2.weight": (d, h), f"{p}.pwconv2.bias": (d,)}
    for i in (0, 1, 3, 4):
        p = f"backbone.pos_net.{i}"
        m |= {f"{p}.{n}.weight": (d,) for n in ("norm1", "norm2")} | {f"{p}.{n}.bias": (d,) for n in ("norm1", "norm2")}
        m |= {f"{p}.{n}.weight": (d, d, 3) for n in ("conv1", "conv2")} | {f"{p}.{n}.bias": (d,) for n in ("conv1", "conv2")}
    m |= {"backbone.pos_net.2.norm.weight": (d,), "backbone.pos_net.2.norm.bias": (d,)}
    m |= {f"backbone.pos_net.2.{n}.weight": (d, d, 1) for n in ("q", "k", "v", "proj_out")}
    m |= {f"backbone.pos_net.2.{n}.bias": (d,) for n in ("q", "k", "v", "proj_out")}
    m |= {"head.out.weight": (n_fft + 2, d), "head.out.bias": (n_fft + 2,), "head.istft.window": (n_fft,)}
    return m


@pytest.mark.parametrize("downsamples, n_fft, hop, encoder_kernels", [
    ([6, 5, 5, 4], 2400, 600, (8, 10, 10, 12)),   # 40 codes/s: encoder strides 4, 5, 5, 6
    ([8, 5, 4, 2], 1280, 320, (4, 8, 10, 16)),    # 75 codes/s: encoder strides 2, 4, 5, 8
])
def test_full_size_model_from_official_yaml_has_official_keys_and_shapes(tmp_path, downsamples, n_fft, hop,
                                                                         encoder_kernels):
    config = tmp_path / "official.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "decoder.experiment.WavTokenizer",
                                                "init_args": official_init_args(downsamples, n_fft, hop)}}))
    arch = read_arch(config)
    with torch.device("meta"):
        model = WavTokenizer(arch)
    assert (model.hop_length, model.frame_rate) == (hop, 24000 / hop)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = official_manifest(encoder_kernels, n_fft)
    assert sorted(ours) == sorted(official)
    assert ours == official
    assert len(ours) == 289


def test_fixture_keys_are_the_full_keys_minus_convnext_2_to_11():
    ckpt = torch.load(FIXTURE / "wavtokenizer_fixture_frame40_tiny.ckpt", weights_only=True)
    fixture_keys = {k for k in ckpt["state_dict"] if k.startswith(("feature_extractor.", "backbone.", "head."))}
    full_keys = set(official_manifest((8, 10, 10, 12), 2400))
    assert fixture_keys == {k for k in full_keys if not k.startswith(tuple(f"backbone.convnext.{i}." for i in range(2, 12)))}


@pytest.fixture(scope="module")
def codec():
    return load_codec(FIXTURE / "wavtokenizer_fixture_frame40_tiny.yaml", FIXTURE / "wavtokenizer_fixture_frame40_tiny.ckpt")


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Speech-like random clips and a batch holding them, padded with loud noise (padding must not leak)."""
    g = torch.Generator().manual_seed(seed)
    clips = [torch.randn(n, generator=g).cumsum(0).remainder(2.0).sub(1.0) * 0.3 for n in lengths]
    batch = torch.randn(len(lengths), max(lengths), generator=g)
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    return batch, torch.tensor(lengths), clips


def test_code_lengths_are_ceil_of_samples_over_hop(codec):
    lengths = torch.tensor([1, 599, 600, 601, 1200, 48000, 48001])
    assert codec.code_lengths(lengths).tolist() == [-(-n // 600) for n in lengths.tolist()]


def test_batched_codes_equal_one_by_one_codes(codec):
    lengths = [48000, 31234, 24000, 601, 600, 17, 12345, 2]
    batch, lens, clips = padded_batch(lengths)
    codes, code_lengths = codec.encode(batch, lens)
    assert code_lengths.tolist() == [-(-n // 600) for n in lengths]
    assert codes.shape == (len(lengths), 80)
    for i, clip in enumerate(clips):
        alone, alone_length = codec.encode(clip[None])
        assert alone_length.item() == code_lengths[i].item()
        assert torch.equal(codes[i, : code_lengths[i]], alone[0]), f"item {i} ({lengths[i]} samples)"
        assert not codes[i, code_lengths[i]:].any()


def test_batched_decode_equals_one_by_one_decode(codec):
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([80, 37, 1, 12])
    codes = torch.randint(0, 4096, (4, 80), generator=g)
    audio = codec.decode(codes, lengths)
    assert audio.shape == (4, 80 * 600)
    for i, n in enumerate(lengths.tolist()):
        alone = codec.decode(codes[i: i + 1, :n])
        torch.testing.assert_close(audio[i, : n * 600], alone[0], rtol=0, atol=1e-5)
        assert not audio[i, n * 600:].any()


def test_batched_encoder_equals_one_by_one_at_75_per_second():
    """Padding logic depends on the strides: check the 75/s strides too (random weights, so compare latents)."""
    tree = {"model": {"init_args": official_init_args([8, 5, 4, 2], 1280, 320)}}
    tree["model"]["init_args"]["feature_extractor"]["init_args"].update(seanet_n_filters=4, seanet_dimension=32)
    tree["model"]["init_args"]["backbone"]["init_args"].update(input_channels=32, dim=64, intermediate_dim=192,
                                                                num_layers=1)
    tree["model"]["init_args"]["head"]["init_args"]["dim"] = 64
    arch = arch_from_yaml_tree(tree)
    torch.manual_seed(0)
    model = WavTokenizer(arch).eval()
    lengths = [24000, 321, 320, 5, 9999]
    batch, lens, clips = padded_batch(lengths, seed=2)
    with torch.inference_mode():
        latents = model.latents(batch, lens)
        for i, clip in enumerate(clips):
            alone = model.latents(clip[None])
            assert alone.shape[-1] == -(-lengths[i] // 320)
            torch.testing.assert_close(latents[i, :, : alone.shape[-1]], alone[0], rtol=1e-5, atol=1e-5)
