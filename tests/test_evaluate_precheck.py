"""evaluate checks every feature file's header before it loads a model: bad files fail in milliseconds.

Files are real: written by `VideoFeatures.save` and `np.save`, then damaged. Models are named, never loaded:
registered names, a path that does not exist, or a checkpoint directory holding only the JSON files the
check reads (config.json, preprocessor_config.json), which no model loader would accept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfvtg.errors import InputError, ModelError
from tfvtg.evaluate import check_feature_files, evaluate
from tfvtg.features import VideoFeatures, read_metadata
from tfvtg.grounder import Grounder

COCO_ID = "Salesforce/blip2-itm-vit-g-coco"


def _features(t: int = 6, q: int = 32, d: int = 256, **kw) -> VideoFeatures:
    rng = np.random.default_rng(0)
    args = dict(
        features=rng.standard_normal((t, q, d)).astype(np.float16),
        timestamps=np.arange(t) / 3.0,
        duration=t / 3.0,
        fps=3.0,
        encoder=COCO_ID,
        image_size=(364, 364),
    )
    return VideoFeatures(**(args | kw))


def _checkpoint_json_only(path: Path, q: int = 8, d: int = 16, size: int = 32) -> Path:
    """A directory with a BLIP-2 checkpoint's JSON files and no weights."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(
        {"model_type": "blip-2", "num_query_tokens": q, "image_text_hidden_size": d}
    ))
    (path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": size, "width": size}}))
    return path


def test_read_metadata_reads_only_the_header(tmp_path, monkeypatch):
    feats = _features()
    path = feats.save(tmp_path / "a.safetensors")
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    read = []
    real_open = Path.open

    def counting_open(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        real_read = f.read

        def read_and_count(n=-1):
            data = real_read(n)
            read.append(len(data))
            return data

        f.read = read_and_count
        return f

    monkeypatch.setattr(Path, "open", counting_open)
    meta = read_metadata(path)
    assert meta == feats.metadata()  # every stored field; "shape" [6, 32, 256] from the tensor header
    assert sum(read) == header < 1024  # the file holds 6 * 32 * 256 * 2 = 98304 bytes of features after it


def test_truncated_corrupt_and_foreign_files(tmp_path):
    good = _features().save(tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"cut.safetensors: \d+ bytes but its header describes \d+ \(trunc"):
        read_metadata(tmp_path / "cut.safetensors")
    (tmp_path / "noise.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    (tmp_path / "longer.safetensors").write_bytes(data + b"\x00" * 4)
    with pytest.raises(InputError, match=r"trailing data"):
        read_metadata(tmp_path / "longer.safetensors")
    names = ["good", "cut", "noise", "longer"]
    with pytest.raises(InputError) as err:
        check_feature_files([tmp_path / f"{n}.safetensors" for n in names])
    message = str(err.value)
    assert message.startswith("cannot read feature file") and "; 2 more of the 4 feature files" in message
    assert "cut.safetensors" in message and "noise.safetensors: not a tfvtg" in message
    assert "longer.safetensors" in message and "good.safetensors" not in message
    check_feature_files([good])  # a complete file of the default model passes
    odd = _features()
    odd.encoder = ["not", "a", "name"]
    with pytest.raises(InputError, match=r"odd.safetensors: bad metadata \(encoder \['not'"):
        check_feature_files([odd.save(tmp_path / "odd.safetensors")])


def test_many_bad_files_first_three_shown(tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"v{i}.safetensors")
        paths[-1].write_bytes(b"")
    shown = r"^[^;]*v0[^;]*; 4 more of the 5 feature files [a-z ]+: [^;]*v1[^;]*; [^;]*v2[^;]*; \.\.\.$"
    with pytest.raises(InputError, match=shown):
        check_feature_files(paths)


def test_features_of_another_encoder_are_refused(tmp_path):
    other = _features(encoder="Salesforce/blip2-itm-vit-g", image_size=(224, 224))
    other = other.save(tmp_path / "b.safetensors")
    short_name = _features(encoder="blip2").save(tmp_path / "c.safetensors")
    same = _features(encoder="blip2-coco").save(tmp_path / "d.safetensors")  # the registered name of COCO_ID
    with pytest.raises(InputError, match=r"b.safetensors: these features were made by 'Salesforce/blip2-itm-"
                                         r"vit-g' but the text side is 'Salesforce/blip2-itm-vit-g-coco'"):
        check_feature_files([other, same], model="blip2-coco")
    with pytest.raises(InputError, match=r"c.safetensors: these features were made by 'blip2'"):
        check_feature_files([short_name], model="blip2-coco")
    check_feature_files([other], model="blip2")
    check_feature_files([same], model=COCO_ID)
    # A caller's own Grounder is what counts, not the `model` argument (nothing is loaded for this).
    grounder = Grounder("blip2", llm="none", use_cache=False, progress=False)
    check_feature_files([other], model="blip2-coco", grounder=grounder)
    with pytest.raises(InputError, match="d.safetensors"):
        check_feature_files([same], model="blip2-coco", grounder=grounder)
    assert grounder.loaded_encoder is None


def test_a_loaded_encoder_is_what_the_shape_is_checked_against(tiny_blip2_dir, tmp_path):
    ckpt = Path(shutil.copytree(tiny_blip2_dir, tmp_path / "ckpt"))
    grounder = Grounder(str(ckpt), device="cpu", llm="none", use_cache=False, progress=False)
    config = grounder.encoder.config
    q, d = config.num_query_tokens, config.embed_dim
    # Once loaded, the encoder's own config is what counts, not the files in its directory.
    raw = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**raw, "num_query_tokens": q + 5}))
    fits = _features(q=q, d=d, encoder=config.name, image_size=tuple(config.image_size))
    check_feature_files([fits.save(tmp_path / "fits.safetensors")], grounder=grounder)
    wide = _features(q=q + 1, d=d, encoder=config.name, image_size=tuple(config.image_size))
    with pytest.raises(InputError, match=rf"wide.safetensors: features of shape \(6, {q + 1}, {d}\)"):
        check_feature_files([wide.save(tmp_path / "wide.safetensors")], grounder=grounder)


def test_local_checkpoint_image_size_and_feature_shape(tmp_path):
    ckpt = _checkpoint_json_only(tmp_path / "ckpt", q=8, d=16, size=32)
    fits = _features(q=8, d=16, encoder=str(ckpt), image_size=(32, 32)).save(tmp_path / "fits.safetensors")
    check_feature_files([fits], model=str(ckpt))
    # Same directory name, but made at another image size: another model.
    big = _features(q=8, d=16, encoder=str(ckpt), image_size=(364, 364)).save(tmp_path / "big.safetensors")
    with pytest.raises(InputError, match=r"big.safetensors: these features were made at image size \(364"):
        check_feature_files([big], model=str(ckpt))
    # A Hub id against a directory cannot be told apart by name (only warned at grounding time) ...
    hub = _features(q=8, d=16, encoder=COCO_ID, image_size=(32, 32)).save(tmp_path / "hub.safetensors")
    check_feature_files([hub], model=str(ckpt))
    # ... but the header's (T, Q, D) shows features that this checkpoint cannot have made.
    wide = _features(encoder=COCO_ID, image_size=(32, 32)).save(tmp_path / "wide.safetensors")
    with pytest.raises(InputError, match=r"wide.safetensors: features of shape \(6, 32, 256\) but .*ckpt "
                                         r"makes \(T, 8, 16\)"):
        check_feature_files([wide], model=str(ckpt))


def test_official_npy_files_checked_without_reading_the_data(tmp_path):
    ckpt = _checkpoint_json_only(tmp_path / "ckpt", q=8, d=16)
    np.save(tmp_path / "ok.npy", np.zeros((5, 8, 16), np.float16))
    np.save(tmp_path / "flat.npy", np.zeros((5, 16), np.float16))
    np.save(tmp_path / "ints.npy", np.zeros((5, 8, 16), np.int32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 16), np.float16))
    np.save(tmp_path / "wide.npy", np.zeros((5, 32, 256), np.float16))
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:-10])
    check_feature_files([tmp_path / "ok.npy"], "tfvtg-npy", model=str(ckpt))
    cases = {
        "flat.npy": r"features of shape \(5, 16\), expected \(T, 8, 16\)",
        "ints.npy": r"expected a \(T, 32, 256\) float array, got int32",
        "empty.npy": r"T >= 1",
        "wide.npy": r"\(5, 32, 256\) but .* makes \(T, 8, 16\)",
        "evil.npy": r"cannot read .*evil.npy",
        "cut.npy": r"cannot read .*cut.npy",
    }
    for name, match in cases.items():
        with pytest.raises(InputError, match=match):
            check_feature_files([tmp_path / "ok.npy", tmp_path / name], "tfvtg-npy", model=str(ckpt))
    # An unknown model (no checkpoint files at hand) still gets the (T, Q, D) float check.
    with pytest.raises(InputError, match=r"\(5, 16\), expected \(T, Q, D\)"):
        check_feature_files([tmp_path / "flat.npy"], "tfvtg-npy", model="blip2-coco")


def _annotations(tmp_path: Path, vids: list[str]) -> Path:
    records = {vid: {"duration": 2.0, "timestamps": [[0.0, 1.0]], "sentences": ["a person opens the door"]}
               for vid in vids}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(records))
    return path


def test_evaluate_reports_a_bad_file_before_loading_the_model(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    _features().save(features / "a.safetensors")
    data = _features().save(features / "b.safetensors").read_bytes()
    (features / "b.safetensors").write_bytes(data[: len(data) // 2])
    ann = _annotations(tmp_path, ["a", "b"])
    missing_model = str(tmp_path / "no-such-model")
    # The model path does not exist, yet the error is the feature file's: the model was never loaded.
    with pytest.raises(InputError, match=r"^cannot read feature file .*b.safetensors: .*truncated"):
        evaluate("charades-sta", ann, features, model=missing_model, progress=False)
    # With good files the same call gets as far as loading the model, which reports itself.
    (features / "b.safetensors").write_bytes(data)
    with pytest.raises(ModelError, match="no-such-model"):
        evaluate("charades-sta", ann, features, model=missing_model, progress=False)
    # Features from another Hub model: refused up front, not after encoding every text.
    _features(encoder="Salesforce/blip2-itm-vit-g").save(features / "a.safetensors")
    with pytest.raises(InputError, match=r"a.safetensors: these features were made by"):
        evaluate("charades-sta", ann, features, model="blip2-coco", progress=False)
