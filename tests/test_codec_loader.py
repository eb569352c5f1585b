"""The codec loader takes official checkpoints strictly and refuses every bad one with a clear error.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_codec_loader.py -q

Bad checkpoints are made in tmp_path from the reference fixture, one defect each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from stages.codec import CodecLoadError, codec_id, load_codec, save_codec
from stages.codec.loader import read_arch

FIXTURE = Path(__file__).parent / "fixtures" / "wavtokenizer"
CONFIG = FIXTURE / "wavtokenizer_fixture_frame40_tiny.yaml"
CHECKPOINT = FIXTURE / "wavtokenizer_fixture_frame40_tiny.ckpt"
CODEBOOK = "feature_extractor.encodec.quantizer.vq.layers.0._codebook"


@pytest.fixture(scope="module")
def ckpt() -> dict:
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


def write_ckpt(tmp_path: Path, ckpt: dict, edit) -> Path:
    state = dict(ckpt["state_dict"])
    edit(state)
    path = tmp_path / "edited.ckpt"
    torch.save({**ckpt, "state_dict": state}, path)
    return path


def write_yaml(tmp_path: Path, edit) -> Path:
    tree = yaml.safe_load(CONFIG.read_text())
    edit(tree["model"]["init_args"])
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_fixture_loads_and_discriminator_keys_are_dropped():
    model = load_codec(CONFIG, CHECKPOINT)
    keys = set(model.state_dict())
    assert len(keys) == 199
    assert not any(k.startswith(("multiperioddisc.", "multiresddisc.", "dac", "melspec_loss.")) for k in keys)
    assert not model.training


def test_fixture_only_seanet_sizes_are_read_and_default_to_official(tmp_path):
    assert (read_arch(CONFIG).seanet_n_filters, read_arch(CONFIG).seanet_dimension) == (4, 32)

    def drop(init):
        del init["feature_extractor"]["init_args"]["seanet_n_filters"]
        del init["feature_extractor"]["init_args"]["seanet_dimension"]
        init["backbone"]["init_args"]["input_channels"] = 512
    arch = read_arch(write_yaml(tmp_path, drop))
    assert (arch.seanet_n_filters, arch.seanet_dimension) == (32, 512)


def test_extra_non_generator_keys_are_ignored(tmp_path, ckpt):
    path = write_ckpt(tmp_path, ckpt, lambda s: s.update({"multiperioddisc.discriminators.1.emb.weight": torch.ones(2)}))
    load_codec(CONFIG, path)


def expect_error(config: Path, checkpoint: Path, *fragments: str) -> str:
    with pytest.raises(CodecLoadError) as err:
        load_codec(config, checkpoint)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_missing_generator_key_is_named(tmp_path, ckpt):
    key = "backbone.convnext.1.gamma"
    path = write_ckpt(tmp_path, ckpt, lambda s: s.pop(key))
    expect_error(CONFIG, path, "1 missing", key)


def test_extra_generator_key_is_named(tmp_path, ckpt):
    key = "backbone.convnext.1.extra_scale"
    path = write_ckpt(tmp_path, ckpt, lambda s: s.update({key: torch.ones(64)}))
    expect_error(CONFIG, path, "1 unexpected", key)


def test_wrong_shape_is_named(tmp_path, ckpt):
    key = "head.out.bias"
    path = write_ckpt(tmp_path, ckpt, lambda s: s.update({key: torch.zeros(7)}))
    expect_error(CONFIG, path, key, "[7]", "[2402]")


def test_uninitialised_codebook_is_refused(tmp_path, ckpt):
    path = write_ckpt(tmp_path, ckpt, lambda s: s.update({f"{CODEBOOK}.inited": torch.zeros(1)}))
    expect_error(CONFIG, path, f"{CODEBOOK}.inited", "never initialised")


def test_yaml_with_more_layers_than_the_checkpoint(tmp_path):
    config = write_yaml(tmp_path, lambda i: i["backbone"]["init_args"].update(num_layers=3))
    expect_error(config, CHECKPOINT, "backbone.convnext.2.", str(config))


def test_yaml_with_other_widths_than_the_checkpoint(tmp_path):
    def widen(init):
        init["backbone"]["init_args"]["dim"] = 96
        init["head"]["init_args"]["dim"] = 96
    config = write_yaml(tmp_path, widen)
    expect_error(config, CHECKPOINT, "backbone.embed.weight", "[64, 32, 7]", "[96, 32, 7]")


def test_yaml_with_other_strides_than_the_checkpoint(tmp_path):
    def strides(init):
        init["feature_extractor"]["init_args"]["dowmsamples"] = [8, 5, 4, 2]
        init["head"]["init_args"].update(n_fft=1280, hop_length=320)
    config = write_yaml(tmp_path, strides)
    expect_error(config, CHECKPOINT, "encoder.model.12.conv.conv.weight_v", "shape")


@pytest.mark.parametrize("edit, fragment", [
    (lambda i: i["backbone"]["init_args"].update(depth=3), "unknown key(s) in model.init_args.backbone"),
    (lambda i: i["head"].update(class_path="decoder.heads.IMDCTCosHead"), "IMDCTCosHead"),
    (lambda i: i["head"]["init_args"].update(hop_length=320), "product of downsamples"),
    (lambda i: i["head"]["init_args"].update(padding="center"), "padding"),
    (lambda i: i["backbone"]["init_args"].pop("dim"), "lacks dim"),
    (lambda i: i["backbone"]["init_args"].update(input_channels=512), "input_channels"),
])
def test_inconsistent_yaml_is_refused(tmp_path, edit, fragment):
    expect_error(write_yaml(tmp_path, edit), CHECKPOINT, fragment)


def test_not_a_wavtokenizer_yaml(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("model: [1, 2]\n")
    expect_error(path, CHECKPOINT, "expected a mapping at model")


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(CHECKPOINT.read_bytes()[: CHECKPOINT.stat().st_size // 2])
    expect_error(CONFIG, path, "corrupt or truncated")


def test_garbage_checkpoint(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"not a checkpoint at all" * 100)
    expect_error(CONFIG, path, "corrupt or truncated")


def test_missing_checkpoint(tmp_path):
    expect_error(CONFIG, tmp_path / "absent.ckpt", "not found")


def test_checkpoint_without_state_dict(tmp_path, ckpt):
    path = tmp_path / "bare.ckpt"
    torch.save(dict(ckpt["state_dict"]), path)
    expect_error(CONFIG, path, "no 'state_dict'")


class RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): a stand-in for any code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, ckpt):
    marker = tmp_path / "code_ran"
    path = tmp_path / "malicious.ckpt"
    torch.save({**ckpt, "callbacks": {"evil": RunsCodeWhenUnpickled(marker)}}, path)
    assert not marker.exists()
    expect_error(CONFIG, path, "refused", "would run code")
    assert not marker.exists()


def test_save_codec_round_trips_and_codec_id_tracks_weights(tmp_path):
    model = load_codec(CONFIG, CHECKPOINT)
    config, checkpoint = tmp_path / "codec.yaml", tmp_path / "codec.ckpt"
    save_codec(model, checkpoint, config, extra_state={"multiperioddisc.x": torch.ones(3)}, global_step=7)
    again = load_codec(config, checkpoint)
    assert again.arch == model.arch
    assert codec_id(again) == codec_id(model)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] == 7 and "multiperioddisc.x" in saved["state_dict"]

    with torch.no_grad():
        again.head.out.bias[0] += 1e-3
    assert codec_id(again) != codec_id(model)


def test_codec_id_is_stable_across_loads_and_copies(tmp_path):
    copy = shutil.copy(CHECKPOINT, tmp_path / "copy.ckpt")
    assert codec_id(load_codec(CONFIG, CHECKPOINT)) == codec_id(load_codec(CONFIG, copy))


def test_a_normalised_latent_codec_round_trips_and_feeds_the_vq_unit_vectors(tmp_path):
    import dataclasses

    from stages.codec.model import WavTokenizer

    official = load_codec(CONFIG, CHECKPOINT)
    model = WavTokenizer(dataclasses.replace(official.arch, latent_norm="l2"))
    model.load_state_dict(official.state_dict())
    config, checkpoint = tmp_path / "codec.yaml", tmp_path / "codec.ckpt"
    save_codec(model, checkpoint, config)
    assert yaml.safe_load(config.read_text())["model"]["init_args"]["feature_extractor"]["init_args"][
        "latent_norm"] == "l2"
    assert "latent_norm" not in CONFIG.read_text()  # official YAMLs never carry it
    again = load_codec(config, checkpoint)
    assert again.arch.latent_norm == "l2" and official.arch.latent_norm == "none"
    latents = again.latents(torch.randn(2, 2400))
    assert torch.allclose(latents.norm(dim=1), torch.ones(2, latents.shape[-1]), atol=1e-5)
