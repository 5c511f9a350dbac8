"""tfvtg.engines: the shared extraction mechanism and the local engine (ids, resume, non-finite features,
folder scanning, shards, Ctrl-C, cross-video prefetch)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import tfvtg.video
from tests.fixtures.encoders import MeanColorEncoder
from tests.fixtures.videos import make_video
from tfvtg.cli import main
from tfvtg.engines import extract_many
from tfvtg.engines.local import FrameDedup, assemble
from tfvtg.errors import InputError, ModelError
from tfvtg.features import FeatureCache, VideoFeatures, extract_features
from tfvtg.video import video_id


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Three short clips a, b, c (different patterns, 1-2 s)."""
    folder = tmp_path_factory.mktemp("clips")
    make_video(folder / "a.mp4", n_frames=20, fps=10, patterns=range(20))
    make_video(folder / "b.mp4", n_frames=12, fps=10, patterns=range(100, 112))
    make_video(folder / "c.mp4", n_frames=15, fps=10, patterns=range(50, 65))
    return folder


def run(videos, out, **kwargs):
    kwargs.setdefault("model", MeanColorEncoder)
    kwargs.setdefault("progress", False)
    return extract_many(videos, out, **kwargs)


# -- one id rule ---------------------------------------------------------------------------------------------


def test_links_are_named_by_the_link_everywhere(clips, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    for name, target in (("vidA", "a"), ("vidB", "b"), ("vidC", "b")):
        (links / f"{name}.mp4").symlink_to(clips / f"{target}.mp4")
    summary = run([links], tmp_path / "out")
    assert summary.extracted == ["vidA", "vidB", "vidC"] and str(summary).startswith("extracted 3,")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "vidA.safetensors", "vidB.safetensors", "vidC.safetensors"]
    assert VideoFeatures.load(tmp_path / "out" / "vidC.safetensors").video == str(links / "vidC.mp4")
    # The same rule names predictions (`ground --json` vid) and cache entries.
    assert video_id(links / "vidC.mp4") == "vidC" and video_id("x/clip.v2.mkv") == "clip.v2"
    cache = FeatureCache(tmp_path / "cache")
    assert cache.path_for(links / "vidC.mp4", "m", 3.0).name.startswith("vidC-")


def test_a_relative_video_path_is_recorded_absolute_with_links_kept(clips, tmp_path, monkeypatch):
    """The recorded source stays usable from any folder (a search hit plays it), without resolving a link."""
    (tmp_path / "mug.mp4").symlink_to(clips / "a.mp4")
    monkeypatch.chdir(tmp_path)
    run([Path("mug.mp4")], tmp_path / "out")
    assert VideoFeatures.load(tmp_path / "out" / "mug.safetensors").video == str(tmp_path / "mug.mp4")


def test_two_inputs_with_one_id_are_refused_before_any_work(clips, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "a.mkv", n_frames=5, fps=10, format="matroska")

    def no_model():
        raise AssertionError("the encoder was created")

    with pytest.raises(InputError, match=r"a\.mp4 and .*a\.mkv have the same video id 'a'"):
        run([clips / "a.mp4", other], tmp_path / "out", model=no_model)
    assert not (tmp_path / "out").exists()
    # The same file given twice is one input.
    assert run([clips / "a.mp4", clips / "./a.mp4"], tmp_path / "out2").extracted == ["a"]


# -- resume --------------------------------------------------------------------------------------------------


def test_resume_skips_only_files_these_settings_would_write(clips, tmp_path):
    out = tmp_path / "out"
    run([clips], out, fps=3.0)
    reference = {p.name: p.read_bytes() for p in out.iterdir()}
    # Same settings: all skipped, nothing rewritten.
    summary = run([clips], out, fps=3.0, skip_existing=True)
    assert summary.skipped.keys() == {"a", "b", "c"} and not summary.extracted and not summary.redone
    # Another fps, another encoder, another image size, another sampling, dedup: each redone, said why.
    cases = [
        (dict(fps=2.0), "made with fps 3.0, not 2.0"),
        (dict(model=lambda: MeanColorEncoder(name="other")), "made with encoder 'mean-color', not 'other'"),
        (dict(model=lambda: MeanColorEncoder(image_size=(16, 16))), "image_size [24, 32], not [16, 16]"),
        (dict(sampling="reference"), "sampling 'timestamp', not 'reference'"),
        (dict(dedup_threshold=1.0), "dedup_threshold None, not 1.0"),
    ]
    for options, reason in cases:
        for name, data in reference.items():
            (out / name).write_bytes(data)
        lines: list[str] = []
        options = {"fps": 3.0, **options}
        summary = run([clips / "a.mp4"], out, skip_existing=True, echo=lines.append, **options)
        assert summary.extracted == ["a"] and reason in summary.redone["a"], (options, summary.redone)
        assert any(line.startswith("redo a.mp4: existing a.safetensors made with") for line in lines)
    # A truncated file and one with non-finite values are made again; a stray temp file is harmless.
    for name, data in reference.items():
        (out / name).write_bytes(data)
    (out / "a.safetensors").write_bytes(reference["a.safetensors"][:-10])
    damaged = VideoFeatures.load(out / "b.safetensors")
    damaged.features[1, 0, 0] = np.nan
    damaged.save(out / "b.safetensors")
    (out / ".c.safetensors.x1y2.tmp").write_bytes(b"half")
    summary = run([clips], out, fps=3.0, skip_existing=True)
    assert "truncated" in summary.redone["a"] and "values are not finite" in summary.redone["b"]
    assert sorted(summary.extracted) == ["a", "b"] and list(summary.skipped) == ["c"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".safetensors"} == reference


def test_resume_without_fps_checks_the_encoder_default(clips, tmp_path):
    out = tmp_path / "out"
    run([clips / "b.mp4"], out, fps=2.0)
    summary = run([clips / "b.mp4"], out, skip_existing=True)  # the encoder's default is 3 fps
    assert summary.redone["b"] == "made with fps 2.0, not 3.0" and summary.extracted == ["b"]


# -- failures ------------------------------------------------------------------------------------------------


class NanOnPattern(MeanColorEncoder):
    """NaN features for some frames of clip b (the only clip of 4 samples at 3 fps: one batch of 4)."""

    def encode_images(self, frames):
        out = super().encode_images(frames)
        if len(frames) == 4:
            out[1:] = np.nan
        return out


def test_non_finite_features_fail_that_video_only_and_are_never_written(clips, tmp_path, caplog):
    out = tmp_path / "out"
    summary = run([clips], out, model=NanOnPattern)
    assert summary.extracted == ["a", "c"] and list(summary.failed) == ["b"]
    assert summary.failed["b"].startswith(f"non-finite features for {clips / 'b.mp4'} in ")
    assert not (out / "b.safetensors").exists()
    report = json.loads(summary.report.read_text())
    assert summary.report == out / "extract_failures.json"
    assert report["failed"] == [{"id": "b", "video": str(clips / "b.mp4"), "reason": summary.failed["b"]}]
    # A run over other videos leaves b listed; one that stops (a model that cannot load) leaves the report.
    assert run([clips / "a.mp4", clips / "c.mp4"], out, skip_existing=True).report == summary.report
    assert json.loads(summary.report.read_text())["failed"] == report["failed"]
    with pytest.raises(ModelError):
        run([clips], out, model=str(tmp_path / "no-such-model"))
    assert json.loads(summary.report.read_text())["failed"] == report["failed"]
    # A later run that makes b removes the stale report.
    assert run([clips], out, skip_existing=True).report is None
    assert not (out / "extract_failures.json").exists()


def test_ctrl_c_leaves_complete_files_only(clips, tmp_path):
    class Interrupt(MeanColorEncoder):
        def encode_images(self, frames):
            if len(frames) == 4:  # clip b (4 samples at 3 fps)
                raise KeyboardInterrupt
            return super().encode_images(frames)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run([clips], out, model=Interrupt)
    assert [p.name for p in out.iterdir()] == ["a.safetensors"]
    VideoFeatures.load(out / "a.safetensors")


# -- folders and shards --------------------------------------------------------------------------------------


def test_folder_scan_skips_hidden_and_resource_files_and_says_so(clips, tmp_path, caplog):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    os.link(clips / "a.mp4", folder / "a.mp4")
    (folder / "._a.mp4").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".hidden.mp4").write_bytes(b"x")
    (folder / "gone.mp4").symlink_to(folder / "missing.mp4")
    os.link(clips / "b.mp4", folder / "sub" / "b.mp4")
    caplog.set_level(logging.WARNING, logger="tfvtg.engines")
    summary = run([folder], tmp_path / "out")
    assert summary.extracted == ["a"] and not summary.failed
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert "skipped 2 hidden or macOS resource file(s): ._a.mp4, .hidden.mp4" in text
    assert "skipped 1 broken symbolic link(s) (target missing): gone.mp4" in text
    assert "did not enter 1 subfolder(s): sub (pass --recursive" in text
    assert run([folder], tmp_path / "out2", recursive=True).extracted == ["a", "b"]


def test_cli_empty_shard_is_an_error_and_a_broken_link_is_named(clips, tmp_path, capsys):
    assert main(["extract", str(clips), "--out", str(tmp_path / "o"), "--shard", "3/4"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("error: shard 3/4 holds no video: there are only 3 videos for 4 shards; "
                           "use at most 3 shards")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nothing.mp4")
    assert main(["extract", str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "o")]) == 1
    assert "is a broken symbolic link" in capsys.readouterr().err
    assert main(["extract", str(clips), "--out", str(tmp_path / "o"), "--workers", "2"]) == 1
    assert "error: --workers go with --engine ray" in capsys.readouterr().err


# -- the local engine: dedup pieces and cross-video prefetch -------------------------------------------------


def test_frame_dedup_across_batches_and_assemble():
    frames = np.zeros((6, 2, 2, 3), np.uint8)
    frames[2:] = 50
    frames[5] = 52  # within threshold of 50: reuses frame 2
    dedup = FrameDedup(3.0)
    keep1, source1 = dedup.select(frames[:3])
    keep2, source2 = dedup.select(frames[3:])
    assert keep1.tolist() == [0, 2] and source1.tolist() == [0, 0, 1]
    assert keep2.tolist() == [] and source2.tolist() == [1, 1, 1]
    table = [np.array([[[1.0]], [[2.0]]])]
    assert assemble(table, np.concatenate([source1, source2])).ravel().tolist() == [1, 1, 2, 2, 2, 2]


def test_next_video_decodes_while_the_current_one_encodes(clips, tmp_path, monkeypatch):
    opened: list[str] = []
    second_open = threading.Event()
    real = tfvtg.video.sample_frames

    def spy(path, *args, **kwargs):
        opened.append(video_id(path))
        if len(opened) == 2:
            second_open.set()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tfvtg.video, "sample_frames", spy)

    class WaitsForTheNextVideo(MeanColorEncoder):
        def encode_images(self, frames):
            if self.calls == 0:  # the first batch of the first video: the decoder must move on to video 2
                assert second_open.wait(10), "the next video was not opened while the first one encoded"
            return super().encode_images(frames)

    out = tmp_path / "out"
    summary = run([clips], out, model=WaitsForTheNextVideo, batch_size=32)
    assert summary.extracted == ["a", "b", "c"] and opened == ["a", "b", "c"]
    # Bitwise the features of the one-video path (extract_features), file by file.
    for vid in "abc":
        alone = extract_features(clips / f"{vid}.mp4", MeanColorEncoder(), progress=False)
        written = VideoFeatures.load(out / f"{vid}.safetensors")
        assert written.features.tobytes() == alone.features.tobytes()
        assert written.timestamps.tobytes() == alone.timestamps.tobytes()
        assert written.duration == alone.duration


def test_a_bad_video_between_good_ones_with_prefetch(clips, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        os.link(clips / f"{name}.mp4", folder / f"{name}.mp4")
    (folder / "b.mp4").write_bytes(b"not a video at all")
    summary = run([folder], tmp_path / "out", batch_size=4)
    assert summary.extracted == ["a", "c"] and summary.failed["b"].startswith("cannot open")
    for vid in "ac":
        alone = extract_features(clips / f"{vid}.mp4", MeanColorEncoder(), batch_size=4, progress=False)
        assert VideoFeatures.load(tmp_path / "out" / f"{vid}.safetensors").features.tobytes() == \
            alone.features.tobytes()


def test_resume_checks_the_precision_a_file_records(clips, tmp_path):
    from dataclasses import replace

    def float32_encoder():
        encoder = MeanColorEncoder()
        encoder.config = replace(encoder.config, precision="float32")
        return encoder

    out = tmp_path / "out"
    run([clips / "c.mp4"], out, model=float32_encoder, fps=3.0)
    assert VideoFeatures.load(out / "c.safetensors").precision == "float32"
    assert list(run([clips / "c.mp4"], out, model=float32_encoder, fps=3.0, skip_existing=True).skipped) \
        == ["c"]
    made_otherwise = VideoFeatures.load(out / "c.safetensors")
    made_otherwise.precision = "bfloat16"
    made_otherwise.save(out / "c.safetensors")
    summary = run([clips / "c.mp4"], out, model=float32_encoder, fps=3.0, skip_existing=True)
    assert summary.redone["c"] == "made with precision 'bfloat16', not 'float32'"
    unrecorded = VideoFeatures.load(out / "c.safetensors")
    unrecorded.precision = None  # a file from before tfvtg recorded precision is accepted
    unrecorded.save(out / "c.safetensors")
    assert list(run([clips / "c.mp4"], out, model=float32_encoder, fps=3.0, skip_existing=True).skipped) \
        == ["c"]


def test_the_local_engine_knows_its_precision_without_loading_the_encoder():
    """Resume checks a named checkpoint's precision before any load: it follows from device and dtype."""
    from tfvtg.engines.base import ExtractSettings
    from tfvtg.engines.local import LocalEngine

    engine = LocalEngine()
    missing = "/nonexistent/checkpoint"  # never opened: nothing is loaded
    precision = engine.known_precision
    assert precision(ExtractSettings(model=missing, device="cpu")) == "float32"
    assert precision(ExtractSettings(model=missing, device="cpu", dtype="bfloat16")) == "bfloat16"
    assert precision(ExtractSettings(model=MeanColorEncoder)) is None  # a callable: known after loading
