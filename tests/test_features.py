"""tfvtg.features: extraction, safetensors round trip, official .npy files, the cache and frame dedup."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tfvtg
from tests.fixtures.encoders import MeanColorEncoder
from tests.fixtures.videos import frame_pattern, make_video
from tfvtg.atomic import write_atomic
from tfvtg.encoders.base import Encoder
from tfvtg.errors import InputError, ModelError, VideoError
from tfvtg.features import FeatureCache, VideoFeatures, extract_features, load_features
from tfvtg.video import read_frames


def expected_features(video, encoder, fps=3.0, mode="timestamp"):
    frames, times, duration = read_frames(video, fps, encoder.config.image_size, mode=mode)
    fresh = MeanColorEncoder(image_size=encoder.config.image_size)
    return fresh.encode_images(frames).astype(np.float16), times


@pytest.fixture
def encoder() -> MeanColorEncoder:
    return MeanColorEncoder()


def test_encoder_follows_protocol(encoder):
    assert isinstance(encoder, Encoder)


# -- extraction ----


def test_extract_features(cfr_video, encoder):
    feats = extract_features(cfr_video, encoder, batch_size=4, progress=False)
    want, times = expected_features(cfr_video, encoder)
    assert feats.features.dtype == np.float16 and feats.features.shape == (9, 2, 3)
    assert feats.features.tobytes() == want.tobytes()
    assert feats.timestamps.dtype == np.float64
    assert feats.timestamps.tolist() == times.tolist() == [i / 10 for i in (0, 3, 6, 10, 13, 16, 20, 23, 26)]
    assert (feats.duration, feats.fps, feats.encoder, feats.image_size) == (3.0, 3.0, "mean-color", (24, 32))
    assert (feats.sampling, feats.video, feats.skipped_frames) == ("timestamp", str(cfr_video), 0)
    assert feats.version == tfvtg.__version__
    assert encoder.calls == 3 and encoder.frames_seen == 9  # batches of 4, 4, 1
    # The bottom half's green level identifies the frame (sample 1 is frame 3, pattern 3).
    green = frame_pattern(3, (48, 64))[24:, :, 1].mean()
    assert feats.features[1, 1, 1] * 255 == pytest.approx(green, abs=3)


def test_extract_uses_encoder_default_fps_and_reference_mode(cfr_video):
    enc = MeanColorEncoder(default_fps=2.0)
    assert len(extract_features(cfr_video, enc, progress=False)) == 6
    feats = extract_features(cfr_video, enc, fps=3.0, mode="reference", progress=False)
    assert feats.sampling == "reference" and feats.fps == 3.0
    assert feats.timestamps.tolist() == [i / 10 for i in (0, 4, 7, 11, 14, 18, 22, 25, 29)]
    want, _ = expected_features(cfr_video, enc, 3.0, mode="reference")
    assert feats.features.tobytes() == want.tobytes()


def test_extract_progress_bar_on_stderr(cfr_video, encoder, capsys):
    extract_features(cfr_video, encoder, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "encoding" in captured.err


def test_extract_errors(cfr_video, encoder, tmp_path):
    with pytest.raises(InputError, match="mode"):
        extract_features(cfr_video, encoder, mode="nearest", progress=False)
    for bad in (-1.0, float("nan"), "3", True):
        with pytest.raises(InputError, match="dedup_threshold"):
            extract_features(cfr_video, encoder, dedup_threshold=bad, progress=False)
    with pytest.raises(VideoError, match="file not found"):
        extract_features(tmp_path / "missing.mp4", encoder, progress=False)
    for bad in ("abc", [3]):
        with pytest.raises(InputError, match="fps must be a positive number"):
            extract_features(cfr_video, encoder, fps=bad, progress=False)
        with pytest.raises(InputError, match="fps must be a positive number"):
            FeatureCache(tmp_path / "cache").get_or_extract(cfr_video, encoder, fps=bad, progress=False)

    class BrokenEncoder(MeanColorEncoder):
        def encode_images(self, frames):
            return super().encode_images(frames)[:-1]

    with pytest.raises(ModelError, match="returned shape"):
        extract_features(cfr_video, BrokenEncoder(), progress=False)


def test_extract_shared_clip(shared_videos, encoder):
    feats = extract_features(shared_videos / "bikes.mp4", encoder, progress=False)
    assert feats.features.shape == (30, 2, 3) and feats.duration == pytest.approx(10.0, abs=0.05)
    assert np.all(np.diff(feats.timestamps) > 0) and feats.timestamps[0] == 0.0
    # Shot cuts at 1.2 s and 3.04 s: the frames on either side differ in colour.
    before, after = np.searchsorted(feats.timestamps, 1.2) - 1, np.searchsorted(feats.timestamps, 1.3)
    assert feats.timestamps[before] < 1.2 < feats.timestamps[after]
    assert np.abs(feats.features[before] - feats.features[after]).max() > 0.02


# -- dedup ----


def test_dedup_reuses_features_of_repeated_frames(repeated_video, caplog):
    caplog.set_level(logging.INFO, logger="tfvtg.engines.local")
    plain_enc = MeanColorEncoder()
    plain = extract_features(repeated_video, plain_enc, fps=3.0, progress=False)
    enc = MeanColorEncoder()
    feats = extract_features(repeated_video, enc, fps=3.0, batch_size=2, dedup_threshold=2.0, progress=False)
    # Patterns 0,0,0,0,5,5,5,9,9,9,9,9: only the first frame of each run is encoded.
    assert len(feats) == 12 and feats.skipped_frames == 9
    assert enc.frames_seen == 3 and plain_enc.frames_seen == 12
    runs = [0] * 4 + [4] * 3 + [7] * 5
    for i, src in enumerate(runs):
        assert feats.features[i].tobytes() == plain.features[src].tobytes()
    diff = np.abs(feats.features.astype(np.float32) - plain.features.astype(np.float32))
    assert diff.max() < 0.02
    assert feats.timestamps.tolist() == plain.timestamps.tolist()
    assert any("reused features for 9 of 12" in r.getMessage() for r in caplog.records)


def test_dedup_zero_threshold_encodes_everything(repeated_video):
    enc = MeanColorEncoder()
    feats = extract_features(repeated_video, enc, fps=3.0, dedup_threshold=0.0, progress=False)
    assert feats.skipped_frames == 0 and enc.frames_seen == 12


def test_dedup_high_threshold_keeps_first_frame_only(cfr_video):
    enc = MeanColorEncoder()
    feats = extract_features(cfr_video, enc, batch_size=2, dedup_threshold=256.0, progress=False)
    assert feats.skipped_frames == 8 and enc.frames_seen == 1
    assert np.all(feats.features == feats.features[0])


# -- files ----


def random_features(t=7, seed=0, **kw) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    args = dict(
        features=rng.standard_normal((t, 32, 256)).astype(np.float16),
        timestamps=np.sort(rng.uniform(0, 10, t)),
        duration=10.25,
        fps=3.0,
        encoder="blip2-coco",
        image_size=(364, 364),
        sampling="timestamp",
        video="clips/a b.mp4",
        skipped_frames=2,
    )
    args.update(kw)
    return VideoFeatures(**args)


def test_save_load_round_trip_bit_exact(tmp_path):
    feats = random_features()
    path = feats.save(tmp_path / "sub" / "a.safetensors")
    assert path == tmp_path / "sub" / "a.safetensors"
    assert os.listdir(path.parent) == ["a.safetensors"]  # no temp file left
    back = VideoFeatures.load(path)
    assert back.features.dtype == np.float16 and back.features.tobytes() == feats.features.tobytes()
    assert back.timestamps.dtype == np.float64 and back.timestamps.tobytes() == feats.timestamps.tobytes()
    assert back.metadata() == feats.metadata()
    names = ("duration", "fps", "encoder", "image_size", "sampling", "video", "skipped_frames", "version",
             "precision")
    assert [getattr(back, n) for n in names] == [getattr(feats, n) for n in names]


def test_precision_is_recorded_and_old_files_without_it_load(tmp_path, cfr_video, encoder):
    from dataclasses import replace

    from safetensors.numpy import save_file

    from tfvtg.features import read_metadata

    assert extract_features(cfr_video, encoder, progress=False).precision is None  # the encoder does not say
    encoder.config = replace(encoder.config, precision="bfloat16")
    made = extract_features(cfr_video, encoder, progress=False)
    assert made.precision == "bfloat16" and made.metadata()["precision"] == "bfloat16"
    path = made.save(tmp_path / "new.safetensors")
    assert VideoFeatures.load(path).precision == "bfloat16" and read_metadata(path)["precision"] == "bfloat16"
    old_meta = {k: v for k, v in random_features().metadata().items() if k != "precision"}
    save_file({"features": np.zeros((2, 32, 256), np.float16), "timestamps": np.arange(2.0)},
              str(tmp_path / "old.safetensors"), metadata={"tfvtg": json.dumps(old_meta)})
    old = load_features(tmp_path / "old.safetensors")
    assert old.precision is None and len(old) == 2 and read_metadata(tmp_path / "old.safetensors").get(
        "precision") is None
    np.save(tmp_path / "vid.npy", np.zeros((3, 32, 256), np.float16))
    assert load_features(tmp_path / "vid.npy", duration=1.0).precision == "autocast-float16"  # official
    with pytest.raises(InputError, match="precision must be a name"):
        random_features(precision=16)


def test_cache_entry_of_another_precision_is_a_miss(tmp_path, own_video, caplog):
    from dataclasses import replace

    cache = FeatureCache(tmp_path)
    fp32 = MeanColorEncoder()
    fp32.config = replace(fp32.config, precision="float32")
    cache.get_or_extract(own_video, fp32, progress=False)
    assert cache.get(own_video, "mean-color", 3.0, precision="float32").precision == "float32"
    assert cache.get(own_video, "mean-color", 3.0) is not None  # a caller that does not say: any precision
    with caplog.at_level(logging.INFO, logger="tfvtg.features"):
        assert cache.get(own_video, "mean-color", 3.0, precision="bfloat16") is None
    assert "made in float32, not bfloat16" in caplog.text
    bf16 = MeanColorEncoder()
    bf16.config = replace(bf16.config, precision="bfloat16")
    assert cache.get_or_extract(own_video, bf16, progress=False).precision == "bfloat16"
    assert bf16.calls > 0  # extracted again, and now cached in bfloat16
    unknown = MeanColorEncoder()  # files and encoders that record no precision match any
    assert cache.get_or_extract(own_video, unknown, progress=False).precision == "bfloat16"
    assert unknown.calls == 0


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    from safetensors import safe_open

    path = random_features().save(tmp_path / "a.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["tfvtg"])
        assert sorted(f.keys()) == ["features", "timestamps"]
    assert meta["encoder"] == "blip2-coco" and meta["shape"] == [7, 32, 256] and meta["dtype"] == "float16"
    assert meta["format"] == "tfvtg.features" and meta["format_version"] == 1


def test_load_refuses_mismatched_metadata(tmp_path):
    path = random_features().save(tmp_path / "a.safetensors")
    with pytest.raises(InputError, match="encoder 'blip2-coco', not 'blip2'"):
        VideoFeatures.load(path, encoder="blip2")
    with pytest.raises(InputError, match="3 fps, not 1"):
        VideoFeatures.load(path, fps=1.0)
    assert len(VideoFeatures.load(path, encoder="blip2-coco", fps=3)) == 7
    assert len(load_features(path, encoder=None, fps=None)) == 7


def test_load_refuses_damaged_and_foreign_files(tmp_path):
    from safetensors.numpy import save_file

    good = random_features().save(tmp_path / "good.safetensors")
    data = good.read_bytes()
    cases = {
        "garbage.safetensors": b"\x00\x01not safetensors at all" * 10,
        "short.safetensors": b"\x01",
        "cut.safetensors": data[: len(data) // 2],
        "empty.safetensors": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="cannot read feature file"):
            VideoFeatures.load(tmp_path / name)
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="not a tfvtg"):
        VideoFeatures.load(tmp_path / "foreign.safetensors")
    with pytest.raises(InputError, match="cannot read"):
        VideoFeatures.load(tmp_path / "missing.safetensors")


def test_future_format_version_is_refused(tmp_path):
    from safetensors.numpy import save_file

    meta = random_features().metadata() | {"format_version": 99}
    save_file(
        {"features": np.zeros((1, 2, 3), np.float16), "timestamps": np.zeros(1)},
        str(tmp_path / "v99.safetensors"),
        metadata={"tfvtg": json.dumps(meta)},
    )
    with pytest.raises(InputError, match="version 99"):
        VideoFeatures.load(tmp_path / "v99.safetensors")


def test_invalid_construction():
    with pytest.raises(InputError, match="T, Q, D"):
        random_features(features=np.zeros((3, 4), np.float16))
    with pytest.raises(InputError, match="timestamps"):
        random_features(timestamps=np.zeros(3))


def test_from_tfvtg_npy(tmp_path):
    array = np.random.default_rng(1).standard_normal((5, 32, 256)).astype(np.float16)
    path = tmp_path / "3MSZA.mp4.npy"
    np.save(path, array)
    feats = VideoFeatures.from_tfvtg_npy(path, duration=10.0)
    assert feats.features.tobytes() == array.tobytes()
    assert feats.timestamps.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]  # k * duration / T
    assert (feats.sampling, feats.video, feats.fps) == ("tfvtg-npy", "3MSZA", 3.0)
    assert feats.encoder == "blip2-coco"
    assert feats.image_size == (364, 364) and feats.duration == 10.0
    same = load_features(path, duration=10.0)
    assert same.features.tobytes() == array.tobytes()


class _Trap:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_npy_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="evil.npy"):
        VideoFeatures.from_tfvtg_npy(path, duration=5.0)
    with pytest.raises(InputError):
        load_features(path, duration=5.0)
    assert not marker.exists()


def test_npy_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 256), np.float16))
    with pytest.raises(InputError, match=r"\(T, 32, 256\)"):
        VideoFeatures.from_tfvtg_npy(tmp_path / "flat.npy", duration=3.0)
    np.save(tmp_path / "ints.npy", np.zeros((4, 32, 256), np.int32))
    with pytest.raises(InputError, match="float"):
        VideoFeatures.from_tfvtg_npy(tmp_path / "ints.npy", duration=3.0)
    np.save(tmp_path / "ok.npy", np.zeros((4, 32, 256), np.float16))
    for bad in (0, -1.0, float("nan"), "10"):
        with pytest.raises(InputError, match="duration"):
            VideoFeatures.from_tfvtg_npy(tmp_path / "ok.npy", duration=bad)
    with pytest.raises(InputError, match="needs duration"):
        load_features(tmp_path / "ok.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(InputError, match="text.npy"):
        load_features(tmp_path / "text.npy", duration=3.0)
    with pytest.raises(InputError, match="unknown feature file type"):
        load_features(tmp_path / "feats.pt")


def test_lazy_public_api():
    import tfvtg.features

    assert tfvtg.load_features is tfvtg.features.load_features
    assert tfvtg.VideoFeatures is VideoFeatures
    code = "import sys, tfvtg.features, tfvtg.video; assert not {'av', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# -- atomic writes ----


def test_atomic_write_cleans_up_on_failure(tmp_path):
    target = tmp_path / "x.safetensors"
    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_concurrent_writers_and_readers_never_see_partial_files(tmp_path):
    path = tmp_path / "shared.safetensors"
    versions = [random_features(t=40, seed=s) for s in range(4)]
    versions[0].save(path)
    valid = {v.features.tobytes() for v in versions}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(v: VideoFeatures) -> None:
        try:
            for _ in range(15):
                v.save(path)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                assert VideoFeatures.load(path).features.tobytes() in valid
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(v,)) for v in versions]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert os.listdir(tmp_path) == ["shared.safetensors"]
    assert VideoFeatures.load(path).features.tobytes() in valid


# -- cache ----


@pytest.fixture
def own_video(tmp_path, cfr_video) -> Path:
    """A private copy of the constant-rate clip (tests here modify it)."""
    return Path(shutil.copy(cfr_video, tmp_path / "own.mp4"))


def test_cache_hit_neither_decodes_nor_encodes(tmp_path, own_video):
    cache = FeatureCache(tmp_path / "cache")
    first_enc = MeanColorEncoder()
    first = cache.get_or_extract(own_video, first_enc, progress=False)
    assert first_enc.frames_seen == 9
    files = list((tmp_path / "cache" / "features").iterdir())
    assert len(files) == 1 and files[0].name.startswith("own-") and files[0].suffix == ".safetensors"
    # Make the video undecodable while keeping its size and mtime: only a cache hit can succeed now.
    st = own_video.stat()
    own_video.write_bytes(b"\x00" * st.st_size)
    os.utime(own_video, ns=(st.st_atime_ns, st.st_mtime_ns))
    second_enc = MeanColorEncoder()
    second = cache.get_or_extract(own_video, second_enc, progress=False)
    assert second_enc.calls == 0
    assert second.features.tobytes() == first.features.tobytes()
    assert second.timestamps.tobytes() == first.timestamps.tobytes()
    assert cache.get(own_video, "mean-color", 3.0) is not None
    # A changed file (new mtime) is a miss: it must be decoded, and this one no longer can be.
    os.utime(own_video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.get(own_video, "mean-color", 3.0) is None
    with pytest.raises(VideoError):
        cache.get_or_extract(own_video, MeanColorEncoder(), progress=False)


def test_cache_key_depends_on_every_setting(tmp_path, own_video, cfr_video):
    cache = FeatureCache(tmp_path)
    base = cache.key(own_video, "mean-color", 3.0, "timestamp", None)
    assert base == cache.key(str(own_video), "mean-color", 3, "timestamp", None)
    others = {
        cache.key(own_video, "blip2", 3.0, "timestamp", None),
        cache.key(own_video, "mean-color", 2.0, "timestamp", None),
        cache.key(own_video, "mean-color", 3.0, "reference", None),
        cache.key(own_video, "mean-color", 3.0, "timestamp", 1.5),
        cache.key(cfr_video, "mean-color", 3.0, "timestamp", None),
    }
    assert base not in others and len(others) == 5
    with pytest.raises(VideoError, match="file not found"):
        cache.key(tmp_path / "missing.mp4", "mean-color", 3.0)


def test_cache_settings_are_separate_entries(tmp_path, own_video):
    cache = FeatureCache(tmp_path)
    enc = MeanColorEncoder()
    a = cache.get_or_extract(own_video, enc, fps=3.0, progress=False)
    b = cache.get_or_extract(own_video, enc, fps=2.0, progress=False)
    c = cache.get_or_extract(own_video, enc, fps=3.0, mode="reference", progress=False)
    assert (len(a), len(b), len(c)) == (9, 6, 9) and c.sampling == "reference"
    assert len(list(cache.dir.iterdir())) == 3
    seen = enc.frames_seen
    again = cache.get_or_extract(own_video, enc, fps=2.0, progress=False)
    assert again.timestamps.tolist() == b.timestamps.tolist()
    assert enc.frames_seen == seen


def test_unwritable_cache_warns_and_returns_the_features(tmp_path, own_video, caplog):
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    cache = FeatureCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="tfvtg.features"):
        features = cache.get_or_extract(own_video, MeanColorEncoder(), progress=False)
    assert len(features) == 9 and features.features.shape[1:] == (2, 3)
    assert "cannot write the feature cache" in caplog.text and "not cached" in caplog.text


def test_damaged_cache_file_is_a_miss(tmp_path, own_video, caplog):
    caplog.set_level(logging.WARNING, logger="tfvtg.features")
    cache = FeatureCache(tmp_path)
    first = cache.get_or_extract(own_video, MeanColorEncoder(), progress=False)
    path = cache.path_for(own_video, "mean-color", 3.0)
    path.write_bytes(path.read_bytes()[:100])
    enc = MeanColorEncoder()
    again = cache.get_or_extract(own_video, enc, progress=False)
    assert enc.frames_seen == 9 and again.features.tobytes() == first.features.tobytes()
    assert any("damaged cache file" in r.getMessage() for r in caplog.records)
    assert VideoFeatures.load(path).features.tobytes() == first.features.tobytes()  # rewritten whole


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "envcache"))
    assert FeatureCache().dir == tmp_path / "envcache" / "features"
    monkeypatch.delenv("TFVTG_CACHE")
    assert FeatureCache().dir == Path.home() / ".cache" / "tfvtg" / "features"


def test_concurrent_extractions_leave_one_valid_file(tmp_path, own_video):
    cache = FeatureCache(tmp_path)
    results: list[VideoFeatures] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(cache.get_or_extract(own_video, MeanColorEncoder(), progress=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len({r.features.tobytes() for r in results}) == 1
    assert [p.name for p in cache.dir.iterdir()] == [cache.path_for(own_video, "mean-color", 3.0).name]
    assert VideoFeatures.load(cache.path_for(own_video, "mean-color", 3.0)).features.tobytes() == (
        results[0].features.tobytes()
    )


def test_make_video_clip_in_cache_dir_with_odd_name(tmp_path):
    video = make_video(tmp_path / "we ird.name.mp4", n_frames=3, fps=3)
    cache = FeatureCache(tmp_path / "c")
    cache.get_or_extract(video, MeanColorEncoder(), progress=False)
    (entry,) = cache.dir.iterdir()
    assert entry.name.startswith("we_ird_name-")


def test_prefetch_keeps_order_bounds_memory_and_propagates_errors():
    import threading

    from tfvtg.features import prefetch

    produced: list[int] = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    consumed = []
    for item in prefetch(items(), depth=2):
        assert len(produced) - len(consumed) <= 4  # at most depth queued + one in hand + one being made
        consumed.append(item)
    assert consumed == list(range(10))

    def failing():
        yield 1
        raise ValueError("decoder broke")

    with pytest.raises(ValueError, match="decoder broke"):
        list(prefetch(failing()))

    before = threading.active_count()
    stream = prefetch(iter(range(1000)), depth=1)
    assert next(stream) == 0
    stream.close()  # the consumer stops early: the producer thread must exit
    assert threading.active_count() <= before


def test_feature_and_llm_caches_share_one_root(monkeypatch, tmp_path):
    from tfvtg.decompose import default_cache_dir
    from tfvtg.features import FeatureCache

    monkeypatch.delenv("TFVTG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert FeatureCache().dir == tmp_path / "xdg" / "tfvtg" / "features"
    assert default_cache_dir() == tmp_path / "xdg" / "tfvtg" / "llm"
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "mine"))
    assert FeatureCache().dir == tmp_path / "mine" / "features"
    assert default_cache_dir() == tmp_path / "mine" / "llm"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_count_non_finite_counts_nan_and_both_infinities_in_every_float_type(dtype):
    from tfvtg.features import count_non_finite

    info = np.finfo(dtype)
    values = np.array([0.0, -0.0, 1.5, -2.0, info.max, -info.max, info.tiny, info.smallest_subnormal,
                       np.nan, np.inf, -np.inf, -np.nan], dtype=dtype)
    assert count_non_finite(values) == 4
    strided = values.reshape(3, 4)[:, ::2]
    assert count_non_finite(strided) == int((~np.isfinite(strided)).sum())
    assert count_non_finite(values[:8]) == 0
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)  # every float16 bit pattern
    assert count_non_finite(every) == int((~np.isfinite(every)).sum()) == 2 * 1024
    assert count_non_finite(np.zeros((0, 32, 256), dtype=dtype)) == 0  # a video with no frame
    blocks = np.zeros(2 * (1 << 16) + 3, dtype=dtype)  # two whole blocks and a partial one
    blocks[[0, (1 << 16) - 1, 1 << 16, -1]] = [np.nan, np.inf, -np.inf, np.nan]
    assert count_non_finite(blocks) == 4
