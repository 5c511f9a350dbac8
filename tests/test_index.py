"""tfvtg.index: a collection of videos indexed and searched (add, search, remove, persistence, bad inputs).

Real feature files of the shared clips (tiny BLIP-2) and synthetic feature files with a planted moment; the
CLI runs in-process through ``main`` and, for persistence across processes, as a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfvtg import index as index_module
from tfvtg.cli import main
from tfvtg.errors import InputError
from tfvtg.features import VideoFeatures
from tfvtg.grounder import Grounder
from tfvtg.index import Collection, span_score

pytest.importorskip("faiss")

QUERY = "a hand tilts a black cup sideways"


def tiny_grounder(tiny_blip2_dir: Path, tiny_encoder: Any, **options: Any) -> Grounder:
    grounder = Grounder(str(tiny_blip2_dir), device="cpu", progress=False, use_cache=False, **options)
    grounder._encoder = tiny_encoder  # the session's loaded tiny model (loading it again costs seconds)
    return grounder


def planted_features(path: Path, encoder: str, target: np.ndarray | None, *, frames: int = 60, q: int = 8,
                     seed: int = 0, image_size: tuple[int, int] = (32, 32), span: tuple[int, int] = (20, 30),
                     video: str | None = None) -> Path:
    """A synthetic feature file: smooth random tokens, one token of frames ``span`` pointing at ``target``."""
    rng = np.random.default_rng(seed)
    d = 16
    walk = np.cumsum(rng.normal(size=(frames, 1, d)), axis=0) * 0.05
    feats = walk + rng.normal(size=(frames, q, d))
    if target is not None:
        unit = target / np.linalg.norm(target)
        feats[span[0] : span[1], 0] = 3 * unit + 0.3 * rng.normal(size=(span[1] - span[0], d))
    VideoFeatures(feats.astype(np.float16), np.arange(frames) / 3.0, frames / 3.0, 3.0, encoder, image_size,
                  video=video).save(path)
    return path


@pytest.fixture
def collection(tmp_path: Path, tiny_features_dir: Path) -> Collection:
    c = Collection.open(tmp_path / "idx")
    c.add([tiny_features_dir])
    return c


def test_span_score_is_the_mean_of_the_better_half_of_the_frames_shown() -> None:
    curve = np.array([0.1, 0.2, 0.4, 0.6, 0.3])
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert span_score(curve, times, 1.0, 3.0) == pytest.approx(0.4)  # frames 1, 2: the better one
    assert span_score(curve, times, 1.0, 4.0) == pytest.approx(0.5)  # frames 1-3: the better two
    assert span_score(curve, times, 2.5, 2.7) == pytest.approx(0.4)  # shorter than a frame
    assert span_score(curve, times, 0.0, 5.0) == pytest.approx((0.3 + 0.4 + 0.6) / 3)


def test_add_info_search_remove(collection: Collection, tiny_blip2_dir: Path, tiny_encoder: Any,
                                tiny_features: dict, tmp_path: Path) -> None:
    info = collection.info()
    assert info["videos"] == 3 and info["index"] == "flat"
    assert info["frames"] == sum(len(f) for f in tiny_features.values())
    assert info["tokens"] == info["frames"] * 8 and info["encoder"] == str(tiny_blip2_dir)
    assert info["index_bytes"] > info["tokens"] * 16 * 4  # exact float vectors

    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    hits = collection.search(QUERY, top_k=5, grounder=grounder)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1)) and len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    best = hits[0]
    features = tiny_features[best.video]
    assert best.source == features.video and Path(best.features).stem == best.video
    # The hit is the grounder's own span of that video, scored by its mean query similarity.
    spans = [(m.start, m.end) for m in grounder.ground(features, QUERY, top_k=3)]
    assert (best.start, best.end) in spans
    curve = grounder.similarity_curves(features, [QUERY])[QUERY]
    assert best.score == pytest.approx(span_score(curve, features.timestamps, best.start, best.end))

    assert collection.remove([best.video]) == [best.video]
    assert best.video not in collection.videos and len(collection) == 2
    reopened = Collection.open(tmp_path / "idx")
    assert reopened.videos == collection.videos
    assert all(h.video != best.video for h in reopened.search(QUERY, grounder=grounder))
    with pytest.raises(InputError, match="not in index"):
        reopened.remove([best.video])


@pytest.mark.parametrize("options", [{"profile": "reference", "preset": "activitynet", "stride_seconds": 2.0},
                                     {"method": "tag"}])
def test_grounder_options_flow_through(collection: Collection, tiny_blip2_dir: Path, tiny_encoder: Any,
                                       options: dict[str, Any]) -> None:
    """Options given to search build its Grounder (default model: the index's encoder), as `ground`'s do."""
    hits = collection.search(QUERY, top_k=4, device="cpu", **options)
    assert hits == collection.search(QUERY, top_k=4, grounder=tiny_grounder(tiny_blip2_dir, tiny_encoder,
                                                                            **options))
    assert hits != collection.search(QUERY, top_k=4, grounder=tiny_grounder(tiny_blip2_dir, tiny_encoder))


def test_fast_path_top1_equals_exhaustive(tmp_path: Path, tiny_blip2_dir: Path, tiny_encoder: Any,
                                          tiny_features_dir: Path) -> None:
    """Thirty videos, the query planted in one: the candidates' top hit is the exhaustive one."""
    target = np.asarray(tiny_encoder.encode_texts([QUERY]), dtype=np.float32)[0]
    folder = tmp_path / "feats"
    folder.mkdir()
    for i in range(30):
        planted_features(folder / f"v{i:02d}.safetensors", str(tiny_blip2_dir), target if i == 17 else None,
                         seed=i)
    c = Collection.open(tmp_path / "idx")
    c.add([folder, tiny_features_dir])
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    fast = c.search(QUERY, top_k=3, grounder=grounder, candidates=4)
    slow = c.search(QUERY, top_k=3, grounder=grounder, exhaustive=True)
    assert fast[0] == slow[0] and fast[0].video == "v17"
    assert c.candidates(grounder.text_features([QUERY]), 1) == ["v17"]
    for bad in (0, -1):
        with pytest.raises(InputError, match="candidates"):
            c.search(QUERY, grounder=grounder, candidates=bad)


def test_ivfpq_store_retrains_as_it_grows(tmp_path: Path, tiny_blip2_dir: Path, tiny_encoder: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FLAT_LIMIT tokens the index becomes IVF-PQ, retrained as it grows; the planted video is found."""
    monkeypatch.setattr(index_module, "FLAT_LIMIT", 2_000)
    target = np.asarray(tiny_encoder.encode_texts([QUERY]), dtype=np.float32)[0]
    folder = tmp_path / "feats"
    folder.mkdir()
    files = [planted_features(folder / f"v{i:02d}.safetensors", str(tiny_blip2_dir),
                              target if i == 5 else None, frames=150, seed=i, span=(40, 85))
             for i in range(12)]
    c = Collection.open(tmp_path / "idx")
    c.add(files[:1])
    assert c.info()["index"] == "flat"
    c.add(files[1:3])  # 3,600 tokens: IVF-PQ, trained
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == "ivfpq" and manifest["trained_for"] == 3_600
    c.add(files[3:])  # 14,400 tokens, 4x: added to the trained index, not retrained
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["trained_for"] == 3_600 and c.info()["tokens"] == 14_400
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    assert c.search(QUERY, top_k=1, grounder=grounder, candidates=2)[0].video == "v05"
    assert c.info()["index_bytes"] < 14_400 * 16 * 4  # PQ codes, not the float vectors
    monkeypatch.setattr(index_module, "REGROW", 2)
    more = [planted_features(folder / f"w{i:02d}.safetensors", str(tiny_blip2_dir), None, frames=150,
                             seed=100 + i) for i in range(12)]
    c.add(more)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["trained_for"] == 28_800  # regrown past 2x: retrained from the feature files
    assert c.search(QUERY, top_k=1, grounder=grounder, candidates=2)[0].video == "v05"


def test_an_open_collection_follows_changes_made_by_another(collection: Collection, tmp_path: Path,
                                                            tiny_blip2_dir: Path, tiny_encoder: Any) -> None:
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    collection.search(QUERY, grounder=grounder)  # maps the current index file
    other = Collection.open(tmp_path / "idx")
    other.remove(["cup"])
    other.add([planted_features(tmp_path / "new.safetensors", str(tiny_blip2_dir), None)])
    assert {h.video for h in collection.search(QUERY, top_k=20, grounder=grounder)} == {
        "bigbuckbunny", "bikes", "new"}
    assert collection.info()["videos"] == 3 and "new" in collection.videos


def test_add_again_skips_unchanged_and_reindexes_changed(collection: Collection, tiny_features_dir: Path,
                                                         tmp_path: Path) -> None:
    assert collection.add([tiny_features_dir])["unchanged"] == collection.videos
    changed = tiny_features_dir.parent / "changed"
    changed.mkdir(exist_ok=True)
    copy = changed / "cup.safetensors"
    copy.write_bytes((tiny_features_dir / "cup.safetensors").read_bytes())
    report = collection.add([copy])
    assert report == {"added": [], "updated": ["cup"], "unchanged": [], "failed": {}}
    assert Collection.open(tmp_path / "idx").info()["videos"] == 3


def test_foreign_encoder_and_image_size_are_refused_by_name(collection: Collection, tmp_path: Path,
                                                            tiny_blip2_dir: Path) -> None:
    other = planted_features(tmp_path / "other.safetensors", "blip2", None)
    with pytest.raises(InputError, match=r"encoder 'blip2'.*holds '.*tiny_blip2"):
        collection.add([other])
    bigger = planted_features(tmp_path / "big.safetensors", str(tiny_blip2_dir), None, image_size=(64, 64))
    with pytest.raises(InputError, match=r"image size \(64, 64\).*\(32, 32\)"):
        collection.add([bigger])
    assert collection.info()["videos"] == 3
    with pytest.raises(InputError, match="tokens of"):
        collection.add([planted_features(tmp_path / "q4.safetensors", str(tiny_blip2_dir), None, q=4)])


def test_search_refuses_another_model_before_loading_it(tmp_path: Path) -> None:
    c = Collection.open(tmp_path / "idx")
    c.add([planted_features(tmp_path / "v.safetensors", "blip2-coco", None, image_size=(364, 364))])
    with pytest.raises(InputError, match="by 'blip2-coco' but the text side is 'Salesforce/blip2-itm-vit-g'"):
        c.search(QUERY, model="blip2", device="cpu")  # offline and not cached: loading it would fail


def test_gone_or_changed_feature_file_is_skipped_with_a_warning(
        tmp_path: Path, tiny_features_dir: Path, tiny_blip2_dir: Path, tiny_encoder: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "feats"
    folder.mkdir()
    for path in tiny_features_dir.glob("*.safetensors"):
        (folder / path.name).write_bytes(path.read_bytes())
    c = Collection.open(tmp_path / "idx")
    c.add([folder])
    (folder / "cup.safetensors").unlink()
    os.utime(folder / "bikes.safetensors", ns=(1, 1))
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    with caplog.at_level(logging.WARNING, logger="tfvtg.index"):
        hits = c.search(QUERY, grounder=grounder, exhaustive=True)
    assert {h.video for h in hits} == {"bigbuckbunny"}
    text = caplog.text
    assert (f"skipped video 'cup': its feature file {folder / 'cup.safetensors'} is gone; remove it with "
            f"`tfvtg index remove {tmp_path / 'idx'} cup`") in text
    bikes = folder / "bikes.safetensors"
    assert (f"skipped video 'bikes': its feature file {bikes} has changed since it was indexed; index it "
            f"again with `tfvtg index add {tmp_path / 'idx'} {bikes}`") in text
    assert sorted(c.info()["stale"]) == ["bikes", "cup"]


def test_second_writer_gets_a_clear_error(collection: Collection, tmp_path: Path,
                                          tiny_features_dir: Path) -> None:
    """A second `index add` while one holds the lock (here: another process) fails cleanly."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tfvtg.index import _Lock\n"
         "with _Lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)",
         str(tmp_path / "idx")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"being changed by another process \(pid {holder.pid}\)"):
            collection.add([tiny_features_dir])
        assert main(["index", "remove", str(tmp_path / "idx"), "cup"]) == 1
    finally:
        holder.kill()
        holder.wait()
    assert collection.remove(["cup"]) == ["cup"]  # the lock died with its process


def test_interrupted_add_leaves_the_index_usable(collection: Collection, tmp_path: Path, tiny_blip2_dir: Path,
                                                 tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted while reading the new files, or after writing the new index file but before the manifest:
    the old index answers and the next add succeeds (cleaning what the interruption left)."""
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    before = collection.search(QUERY, grounder=grounder)
    new = planted_features(tmp_path / "new.safetensors", str(tiny_blip2_dir), None)

    def interrupt(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(index_module, "write_atomic", interrupt)
    with pytest.raises(KeyboardInterrupt):
        collection.add([new])
    monkeypatch.undo()
    assert any(p.name.startswith("tokens-2") for p in (tmp_path / "idx").iterdir())  # left behind
    reopened = Collection.open(tmp_path / "idx")
    assert reopened.videos == ["bigbuckbunny", "bikes", "cup"]
    assert reopened.search(QUERY, grounder=grounder) == before

    monkeypatch.setattr(VideoFeatures, "load", interrupt)
    with pytest.raises(KeyboardInterrupt):
        reopened.add([new])
    monkeypatch.undo()
    assert Collection.open(tmp_path / "idx").search(QUERY, grounder=grounder) == before

    assert reopened.add([new])["added"] == ["new"]
    names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert names == [".lock", "manifest.json", "tokens-2.faiss"]


def test_open_refuses_what_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        Collection.open(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a tfvtg index"):
        Collection.open(tmp_path / "other")
    with pytest.raises(InputError, match="no index at"):
        Collection.open(tmp_path / "missing", create=False)
    empty = Collection.open(tmp_path / "missing")
    assert len(empty) == 0 and not (tmp_path / "missing").exists()
    with pytest.raises(InputError, match="holds no video"):
        empty.search(QUERY)
    with pytest.raises(InputError, match="neither a feature file"):
        empty.add([tmp_path / "file"])


def test_cli_index_and_search_across_processes(tmp_path: Path, tiny_blip2_dir: Path, tiny_encoder: Any,
                                               tiny_features_dir: Path, cup_video: Path) -> None:
    """`index add` of feature files and of a video (extracted), `index info`, `search --json` in a fresh
    process equal to the in-process search, `index remove`; errors are one line."""
    idx = tmp_path / "idx"
    bikes = tiny_features_dir / "bikes.safetensors"
    bunny = tiny_features_dir / "bigbuckbunny.safetensors"
    assert main(["index", "add", str(idx), str(bikes), str(bunny)]) == 0
    assert main(["index", "add", str(idx), str(cup_video), "--model", str(tiny_blip2_dir),
                 "--device", "cpu"]) == 0
    assert (idx / "features" / "cup.safetensors").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TFVTG_CACHE=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-m", "tfvtg.cli", "search", str(idx), QUERY, "--json", "--top-k",
                          "4", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    grounder = tiny_grounder(tiny_blip2_dir, tiny_encoder)
    expected = Collection.open(idx).search(QUERY, top_k=4, grounder=grounder)
    assert lines == [h.to_dict() for h in expected]
    assert {"rank", "video", "start", "end", "score", "source"} <= set(lines[0])
    cup = [line for line in lines if line["video"] == "cup"]
    assert not cup or Path(cup[0]["source"]).resolve() == cup_video.resolve()

    info = subprocess.run([sys.executable, "-m", "tfvtg.cli", "index", "info", str(idx), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(info.stdout)["videos"] == 3

    assert main(["index", "remove", str(idx), "cup"]) == 0
    assert not (idx / "features" / "cup.safetensors").exists()  # the index's own extraction goes with it
    assert Collection.open(idx).videos == ["bigbuckbunny", "bikes"]


@pytest.mark.parametrize(("args", "message"), [
    (["search", "{missing}", "a cup"], "no index at"),
    (["index", "info", "{missing}"], "no index at"),
    (["index", "remove", "{idx}", "nope"], "not in index"),
    (["index", "add", "{idx}", "{missing}"], "not found"),
    (["search", "{idx}", "  "], "empty query"),
])
def test_cli_errors_are_one_line(args: list[str], message: str, collection: Collection, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    values = {"missing": str(tmp_path / "missing"), "idx": str(tmp_path / "idx")}
    assert main([a.format(**values) for a in args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_add_videos_goes_through_extract_many(tmp_path: Path, tiny_blip2_dir: Path, cup_video: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Videos given to `add` are named as given (a link by its own name), resumed, and a broken one is
    named in a warning and left out while the others are indexed."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "mug.mp4").symlink_to(cup_video)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    collection = Collection.open(tmp_path / "idx")
    with caplog.at_level("WARNING"):
        report = collection.add([videos], model=str(tiny_blip2_dir), device="cpu")
    assert report["added"] == ["mug"] and list(report["failed"]) == ["broken"]
    assert report["failed"]["broken"].startswith("cannot open")
    assert (tmp_path / "idx" / "features" / "mug.safetensors").is_file()
    assert [r.getMessage() for r in caplog.records if "broken" in r.getMessage()] == [
        f"broken.mp4: {report['failed']['broken']}"]  # named once
    again = Collection.open(tmp_path / "idx").add([videos / "mug.mp4"], model=str(tiny_blip2_dir),
                                                  device="cpu")
    assert again["unchanged"] == ["mug"]


def test_read_ahead_pairs_each_video_with_its_own_features_in_order(
        tmp_path: Path, tiny_blip2_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "feats"
    folder.mkdir()
    for i in range(9):  # more videos than READ_AHEAD: the window slides
        planted_features(folder / f"v{i}.safetensors", str(tiny_blip2_dir), None, seed=i, frames=30 + i)
    c = Collection.open(tmp_path / "idx")
    c.add([folder])
    (folder / "v5.safetensors").unlink()
    names = [f"v{i}" for i in (8, 0, 5, 3, 7, 1, 6, 2, 4)]
    with caplog.at_level(logging.WARNING, logger="tfvtg.index"):
        read = list(c._read_ahead([(name, c._manifest.videos[name]) for name in names]))
    assert [name for name, _ in read] == names
    for name, features in read:
        if name == "v5":
            assert features is None
            continue
        stored = VideoFeatures.load(folder / f"{name}.safetensors").features
        assert features.features.dtype == np.float32
        np.testing.assert_array_equal(features.features, stored.astype(np.float32))
    assert "video 'v5': its feature file" in caplog.text and "v5.safetensors is gone" in caplog.text


@pytest.fixture
def eight_videos(tmp_path: Path, tiny_blip2_dir: Path) -> tuple[Collection, list[tuple[str, Any]]]:
    folder = tmp_path / "feats"
    folder.mkdir()
    for i in range(8):
        planted_features(folder / f"v{i}.safetensors", str(tiny_blip2_dir), None, seed=i)
    c = Collection.open(tmp_path / "idx")
    c.add([folder])
    return c, [(name, c._manifest.videos[name]) for name in sorted(c._manifest.videos)]


def test_read_ahead_past_its_byte_budget_reads_only_the_next_file(
        eight_videos: tuple[Collection, list], monkeypatch: pytest.MonkeyPatch) -> None:
    c, entries = eight_videos
    started: list[str] = []
    real_load = c._load_entry
    monkeypatch.setattr(c, "_load_entry", lambda name, entry: started.append(name) or real_load(name, entry))
    monkeypatch.setattr(index_module, "READ_AHEAD_BYTES", 1)  # every file is over it, as an hour-long one
    reader = c._read_ahead(entries)
    for got, (name, _) in enumerate(entries, start=1):
        assert next(reader)[0] == name
        assert len(started) <= got + 1, "one file read ahead of the one handed out, no more"
    monkeypatch.setattr(index_module, "READ_AHEAD_BYTES", 1 << 30)
    started.clear()
    reader = c._read_ahead(entries)
    assert next(reader)[0] == "v0"
    assert 2 <= len(started) <= 1 + index_module.READ_AHEAD  # within the budget: several ahead
    reader.close()


def test_read_ahead_stopped_early_cancels_the_reads_not_started(
        eight_videos: tuple[Collection, list], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    c, entries = eight_videos
    started: list[str] = []
    release = threading.Event()
    real_load = c._load_entry

    def load(name: str, entry: Any) -> Any:
        started.append(name)
        if name != "v0":
            release.wait(30)  # v1 and v2 hold both reader threads; v3 and v4 wait in the queue
        return real_load(name, entry)

    monkeypatch.setattr(c, "_load_entry", load)
    reader = c._read_ahead(entries)
    assert next(reader)[0] == "v0"
    timer = threading.Timer(1.0, release.set)
    timer.start()
    reader.close()  # the consumer stops (an exception, Ctrl-C): v3 and v4 are never read
    timer.join()
    assert sorted(started) == ["v0", "v1", "v2"]


def test_a_refused_model_leaves_the_index_and_its_files_as_they_were(
        tmp_path: Path, tiny_blip2_dir: Path, cup_video: Path) -> None:
    """Videos extracted with another model are refused before they replace the indexed video's file."""
    idx = tmp_path / "idx"
    c = Collection.open(idx)
    c.add([cup_video], model=str(tiny_blip2_dir), device="cpu")
    indexed = (idx / "features" / "cup.safetensors").read_bytes()
    other = tmp_path / "other_model"  # the same weights elsewhere: another encoder name, refused by name
    shutil.copytree(tiny_blip2_dir, other)
    with pytest.raises(InputError, match=rf"video 'cup' extracted with model '{other}' holds features of "
                                         rf"encoder '{other}'"):
        c.add([cup_video], model=str(other), device="cpu")
    assert (idx / "features" / "cup.safetensors").read_bytes() == indexed
    assert not (idx / ".staging").exists()
    assert c.videos == ["cup"] and c.info()["stale"] == []
    assert c.add([cup_video], device="cpu")["unchanged"] == ["cup"]


def test_cli_add_names_what_it_leaves_out_and_exits_1(
        tmp_path: Path, tiny_features_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "feats"
    shutil.copytree(tiny_features_dir, folder)
    (folder / "damaged.safetensors").write_bytes(b"\x00" * 64)
    idx = tmp_path / "idx"
    assert main(["index", "add", str(idx), str(folder)]) == 1
    captured = capsys.readouterr()
    assert "added 3, updated 0, unchanged 0, not indexed 1; 3 videos" in captured.out
    assert captured.err.count("damaged.safetensors") == 1
    assert captured.err.strip().splitlines()[-1] == "error: not indexed: damaged (reasons above)"
    assert Collection.open(idx).videos == ["bigbuckbunny", "bikes", "cup"]
    # Extraction options with feature files only: said, not silently ignored.
    assert main(["index", "add", str(idx), str(folder / "cup.safetensors"), "--fps", "2"]) == 0
    assert "the extraction options (model, fps, dedup) apply to videos" in capsys.readouterr().err


def test_cli_search_of_an_emptied_or_stale_index(tmp_path: Path, tiny_features_dir: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "feats"
    shutil.copytree(tiny_features_dir, folder)
    idx = tmp_path / "idx"
    assert main(["index", "add", str(idx), str(folder)]) == 0
    for path in folder.glob("*.safetensors"):
        path.unlink()
    capsys.readouterr()
    assert main(["index", "info", str(idx)]) == 0
    assert "stale:    bigbuckbunny, bikes, cup (feature file gone" in capsys.readouterr().out
    assert main(["search", str(idx), QUERY, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "no moment found\n"
    assert captured.err.count("is gone; remove it with `tfvtg index remove") == 3
    assert main(["index", "remove", str(idx), "bigbuckbunny", "bikes", "cup"]) == 0
    capsys.readouterr()
    assert main(["search", str(idx), QUERY]) == 1
    assert capsys.readouterr().err == (f"error: index {idx} holds no video; add some with tfvtg index add\n")

