"""Issue 10's classes of failure, one regression test (or a few) per class: nothing silently wrong, no work
thrown away, clear and early errors, a Python API that names the bad argument.

Videos are synthetic (tests/fixtures/videos.py), the model is the tiny BLIP-2 (tests/fixtures/tiny_models.py),
commands run in-process through their ``main(argv)``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from numpro.cli import main as numpro_main
from tests.fixtures.videos import make_video, pattern_index
from tfvtg.cli import main as tfvtg_main
from tfvtg.console import OutputSet, counted
from tfvtg.datasets import check_spans, load_dataset
from tfvtg.errors import InputError, VideoError
from tfvtg.evaluate import evaluate
from tfvtg.features import VideoFeatures
from tfvtg.video import probe_video, read_frames, reference_indices, sample_frames


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch, tmp_path):
    # The CLI's setup_logging (run in-process by other tests) stops "tfvtg" records from reaching caplog.
    monkeypatch.setattr(logging.getLogger("tfvtg"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("tfvtg"), "handlers", [])
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------ stale outputs: one set per folder


def test_numpro_overlay_rerun_leaves_only_its_own_frames(tmp_path):
    long_clip = make_video(tmp_path / "long.avi", n_frames=40, fps=10)
    short_clip = make_video(tmp_path / "short.mp4", n_frames=12, fps=10)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # not of the set's form: never touched
    assert numpro_main(["overlay", str(long_clip), str(out), "--size", "64x48"]) == 0
    assert len(list(out.glob("frame_*.png"))) == 4
    assert numpro_main(["overlay", str(short_clip), str(out), "--size", "64x48"]) == 0
    frames = sorted(p.name for p in out.glob("frame_*.png"))
    listed = json.loads((out / "frames.json").read_text())["frames"]
    assert frames == [r["file"] for r in listed] == ["frame_00000.png", "frame_00001.png"]
    assert (out / "notes.txt").read_text() == "mine"


def test_output_set_removes_only_its_pattern(tmp_path):
    names = ["fig.png", "fig-1.png", "fig-12.png", "fig-old.png", "fig.pdf", "other-1.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    from tfvtg.cli import _figure_names

    removed = OutputSet(tmp_path, _figure_names(tmp_path / "fig.png"), "figures").clear()
    assert removed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig-old.png", "fig.pdf", "other-1.png"]
    assert OutputSet(tmp_path / "missing", "x", "things").clear() == 0


def test_ground_plot_rerun_with_fewer_queries(tmp_path, tiny_blip2_dir, capsys):
    video = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10)
    figure = tmp_path / "figs" / "curves.png"
    common = ["--plot", str(figure), "--model", str(tiny_blip2_dir), "--device", "cpu", "--no-cache"]
    assert tfvtg_main(["ground", str(video), "-q", "a dog", "-q", "a cat", "-q", "a cow", *common]) == 0
    assert sorted(p.name for p in figure.parent.iterdir()) == ["curves-1.png", "curves-2.png", "curves-3.png"]
    assert tfvtg_main(["ground", str(video), "a dog", *common]) == 0
    assert sorted(p.name for p in figure.parent.iterdir()) == ["curves.png"]
    out = capsys.readouterr().out
    assert f"wrote {figure}" in out.splitlines()
    assert "(2.00 s, 6 frames at 3 fps" in out


# ------------------------------------------------------------- reference sampling counts frames as decord


def _reference_patterns(path, fps: float) -> tuple[list[int], list[float]]:
    stream = sample_frames(path, fps, mode="reference")
    samples = list(stream)
    return [pattern_index(frame) for frame, _ in samples], [t for _, t in samples]


def test_reference_sampling_on_out_of_order_timestamps(tmp_path, caplog):
    # An AVI with B-frames: the decoder hands frames out in display order, but their timestamps are the
    # packets' (decode order), so they go backwards now and then.
    clip = make_video(tmp_path / "bframes.avi", n_frames=30, fps=10)
    import av

    with av.open(str(clip)) as container:
        pts = [frame.pts for frame in container.decode(video=0)]
    assert any(b <= a for a, b in zip(pts, pts[1:], strict=False))  # the file is what this test is about
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        patterns, times = _reference_patterns(clip, 3.0)
    assert patterns == reference_indices(30, 10.0, 3.0).tolist()  # frame k shows pattern k
    np.testing.assert_allclose(times, np.asarray(patterns) / 10.0)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="tfvtg"):  # timestamp mode drops them, and says so
        list(sample_frames(clip, 3.0))
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"{clip}: ") and "frames carry timestamps that go backwards" in message


def test_reference_sampling_held_out_file(tmp_path):
    # Held out while the fix was written: another length, rate, size and sampling rate.
    clip = make_video(tmp_path / "held_out.avi", n_frames=53, fps=Fraction(24), size=(40, 56),
                      preset="medium")
    patterns, times = _reference_patterns(clip, 2.0)
    expected = reference_indices(53, 24.0, 2.0).tolist()
    assert patterns == expected
    np.testing.assert_allclose(times, np.asarray(expected) / 24.0)


# ---------------------------------------------------------------------- inputs that cannot be right


def test_still_image_named_like_a_video(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 24), "red").save(tmp_path / "photo.png")
    fake = tmp_path / "photo.mp4"
    fake.write_bytes((tmp_path / "photo.png").read_bytes())
    with pytest.raises(VideoError, match=r"photo.mp4: it is a still png file, not a video"):
        probe_video(fake)


def test_fps_above_the_video_rate_warns(tmp_path, caplog):
    clip = make_video(tmp_path / "slow.mp4", n_frames=10, fps=5)
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        list(sample_frames(clip, 3.0))
        assert not caplog.records
        list(sample_frames(clip, 12.0))
    assert [r.getMessage() for r in caplog.records] == [
        f"sampling {clip} at 12 fps, above its own 5 fps: each frame is sampled several times; "
        "use --fps 5 or lower"
    ]


def test_annotation_spans_outside_the_video_are_named(tmp_path, caplog):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({
        "v1": {"duration": 10.0, "timestamps": [[2, 4], [8, 12.5], [3, 3]], "sentences": ["a", "b", "c"]},
        "v2": {"duration": 5.0, "timestamps": [[6, 7]], "sentences": ["d"]},
    }))
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        queries = load_dataset("charades-sta", ann)
    assert len(queries) == 4  # kept as annotated (the official metrics score them raw)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ("1 of 4 ground-truth spans end after their video's annotated duration (v1#1 [8, 12.5] of 10 s)"
            in text)
    assert "start at or after their video's end" in text and "v2#0 [6, 7] of 5 s" in text
    assert "zero length" in text and "v1#2 [3, 3]" in text
    assert check_spans(queries[:1], "x") == {"end after the video": [], "start after the video": [],
                                            "zero length": []}


def test_qvhighlights_saliency_checked_when_read(tmp_path):
    good = {"qid": 1, "vid": "v", "query": "a dog", "duration": 10, "relevant_windows": [[0, 4]],
            "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}
    lacking = {"qid": 2, "vid": "v", "query": "a cat", "duration": 10, "relevant_windows": [[4, 6]]}
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(lacking) + "\n")
    with pytest.raises(InputError, match=r"val.jsonl: line 2 \(qid 2\): no 'relevant_clip_ids'"):
        load_dataset("qvhighlights", path)
    path.write_text(json.dumps({**good, "relevant_clip_ids": [0, 7]}) + "\n")
    with pytest.raises(InputError, match="relevant clip id 7 is beyond the 5 2-second clips"):
        load_dataset("qvhighlights", path)
    path.write_text(json.dumps({**good, "saliency_scores": [[1, 2, 3], [4, 4]]}) + "\n")
    with pytest.raises(InputError, match="one score per annotator"):
        load_dataset("qvhighlights", path)


def test_plot_gt_outside_the_video_and_unknown_figure_format(tmp_path, capsys):
    clip = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10)
    assert tfvtg_main(["plot", str(clip), "a dog", "--out", str(tmp_path / "f.png"), "--gt", "5", "6"]) == 1
    assert "--gt 5 6 starts after the end of clip.mp4 (2.00 s)" in _error_line(capsys.readouterr().err)
    assert tfvtg_main(["plot", str(clip), "a dog", "--out", str(tmp_path / "f.xyz")]) == 1
    assert "cannot write a .xyz figure; use one of" in _error_line(capsys.readouterr().err)
    assert tfvtg_main(["ground", str(clip), "a dog", "--plot", str(tmp_path / "f.xyz")]) == 1
    assert "--plot" in _error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- outputs and inputs, CLI


@pytest.mark.parametrize("option", ["--plot", "--queries-file", "--cache-dir"])
def test_paths_of_the_wrong_kind_are_one_error_line(tmp_path, capsys, option):
    clip = make_video(tmp_path / "clip.mp4", n_frames=10, fps=10)
    target = tmp_path / "a-file.txt" if option == "--cache-dir" else tmp_path
    target.write_text("x") if option == "--cache-dir" else None
    assert tfvtg_main(["ground", str(clip), "a dog", option, str(target)]) == 1
    assert _error_line(capsys.readouterr().err)


def test_queries_file_with_bom_and_only_comments(tmp_path):
    from tfvtg.cli import _read_queries

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffa dog runs\n# note\nthe dog sleeps\n".encode())
    assert _read_queries(None, (), bom) == ["a dog runs", "the dog sleeps"]
    comments = tmp_path / "comments.txt"
    comments.write_text("# one\n\n  # two\n")
    with pytest.raises(InputError, match=r"comments.txt holds no query \(only blank lines and # comments\)"):
        _read_queries(None, (), comments)


def test_verbose_before_or_after_the_command(tmp_path, capsys):
    clip = make_video(tmp_path / "clip.mp4", n_frames=10, fps=10)
    for argv in (["-v", "ground", str(clip), ""], ["ground", "-v", str(clip), ""]):
        assert tfvtg_main(argv) == 1
        assert logging.getLogger("tfvtg").level == logging.DEBUG, argv
        assert "Traceback" in capsys.readouterr().err
    assert numpro_main(["-v", "ground", str(clip), ""]) == 1
    assert logging.getLogger("numpro").level == logging.DEBUG
    assert tfvtg_main(["ground", str(clip), ""]) == 1
    assert logging.getLogger("tfvtg").level == logging.INFO


def test_warnings_print_above_progress_bars(capsys):
    from tqdm import tqdm

    from tfvtg.console import setup_logging

    setup_logging()
    with tqdm(total=3, file=sys.stderr, desc="working") as bar:
        bar.update(1)
        logging.getLogger("tfvtg").warning("something to say")
    err = capsys.readouterr().err
    line = next(line for line in err.replace("\r", "\n").splitlines() if "something to say" in line)
    assert line == "warning: something to say"  # its own line, not glued after the bar


def test_counted_nouns():
    assert counted(1, "frame") == "1 frame" and counted(0, "frame") == "0 frames"
    assert counted(1, "query", "queries") == "1 query" and counted(2, "query", "queries") == "2 queries"


# --------------------------------------------------------------------------------- evaluate keeps work


@pytest.fixture
def three_clips(tmp_path, tiny_features_dir, annotation_file_for):
    feats = tmp_path / "features"
    feats.mkdir()
    for path in tiny_features_dir.glob("*.safetensors"):
        (feats / path.name).write_bytes(path.read_bytes())
    return feats, annotation_file_for(tmp_path)


@pytest.fixture
def annotation_file_for(clip_queries, tiny_features):
    def write(folder: Path) -> Path:
        path = folder / "clips.json"
        path.write_text(json.dumps({
            vid: {"duration": round(tiny_features[vid].duration, 2),
                  "timestamps": [q["spans"][0] for q in queries], "sentences": [q["query"] for q in queries]}
            for vid, queries in clip_queries.items()
        }))
        return path

    return write


def _poison(path: Path) -> None:
    feats = VideoFeatures.load(path)
    feats.features[1, 0, 0] = np.nan
    feats.save(path)


def test_evaluate_names_and_skips_non_finite_features(three_clips, tiny_blip2_dir, capsys):
    feats, ann = three_clips
    _poison(feats / "bikes.safetensors")
    base = ["evaluate", "--dataset", "charades-sta", "--annotations", str(ann), "--features", str(feats),
            "--model", str(tiny_blip2_dir), "--device", "cpu"]
    out = feats.parent / "preds.jsonl"
    assert tfvtg_main([*base, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    line = _error_line(err)
    assert "bikes.safetensors: 1 of its" in line and "not finite" in line and "--skip-bad" in line
    partial = feats.parent / "preds.partial.jsonl"
    kept = [json.loads(x) for x in partial.read_text().splitlines()]
    assert kept and {p["vid"] for p in kept} == {"bigbuckbunny"}  # grounded before bikes, not thrown away
    assert str(partial) in err
    assert tfvtg_main([*base, "--skip-bad", "--json", "--out", str(out)]) == 0
    assert not partial.exists() and out.is_file()  # a complete run leaves no stale partial file beside it
    summary = json.loads(capsys.readouterr().out)
    assert summary["bad_videos"] == 1 and summary["skipped_queries"] > 0 and summary["videos"] == 2
    report = evaluate("charades-sta", ann, feats, model=str(tiny_blip2_dir), device="cpu", skip_bad=True,
                      progress=False)
    assert list(report.bad_videos) == ["bikes"] and "not finite" in report.bad_videos["bikes"]
    assert report.load_seconds > 0 and report.seconds > 0


def test_evaluate_refuses_another_videos_features(three_clips, tiny_blip2_dir):
    feats, ann = three_clips
    records = json.loads(ann.read_text())
    records["cup"]["duration"] = 55.0
    ann.write_text(json.dumps(records))
    with pytest.raises(InputError, match=r"cup.safetensors: features of a 8.10 s video, but the annotations "
                                         r"give it 55 s"):
        evaluate("charades-sta", ann, feats, model=str(tiny_blip2_dir), device="cpu", progress=False)
    report = evaluate("charades-sta", ann, feats, model=str(tiny_blip2_dir), device="cpu", skip_bad=True,
                      progress=False)
    assert list(report.bad_videos) == ["cup"] and report.n_videos == 2


def test_evaluate_prints_the_load_apart(three_clips, tiny_blip2_dir, capsys):
    feats, ann = three_clips
    assert tfvtg_main(["evaluate", "--dataset", "charades-sta", "--annotations", str(ann), "--features",
                       str(feats), "--model", str(tiny_blip2_dir), "--device", "cpu"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("took ") and "queries/s), plus " in last and last.endswith(" s loading the model")


# ------------------------------------------------------------------------------- offline, fast and clear


def test_offline_without_the_model_fails_before_torch_loads(tmp_path):
    code = (
        "import sys\n"
        "from tfvtg.encoders import create_encoder\n"
        "from tfvtg.errors import ModelError\n"
        "try:\n"
        "    create_encoder('blip2-coco', cache_dir=sys.argv[1])\n"
        "except ModelError as exc:\n"
        "    print(exc)\n"
        "print('torch' in sys.modules)\n"
    )
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}):
        full = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()} | env
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              env=full, timeout=120, check=True)
        message, torch_loaded = proc.stdout.strip().splitlines()
        assert torch_loaded == "False", env  # decided before anything heavy is imported
        hint = "hf download Salesforce/blip2-itm-vit-g-coco --local-dir models/blip2-itm-vit-g-coco"
        assert hint in message
    from importlib.metadata import entry_points

    # The command the message suggests is one the installed huggingface_hub provides.
    (hf,) = entry_points(group="console_scripts", name="hf")
    assert hf.load() is not None


# ----------------------------------------------------------------------------------------- Python API


@pytest.fixture(scope="module")
def grounder_and_video(tiny_blip2_dir, tiny_features):
    from tfvtg import Grounder

    return Grounder(str(tiny_blip2_dir), device="cpu", use_cache=False, progress=False), tiny_features["cup"]


@pytest.mark.parametrize(("video", "query", "kwargs", "message"), [
    (np.zeros((2, 8, 8, 3), np.uint8), "x", {}, r"got ndarray of shape \(2, 8, 8, 3\) uint8.*encode_frames"),
    (None, "x", {}, "video must be a video file path .* got NoneType None"),
    (123, "x", {}, "video must be a video file path .* got int 123"),
    ("FEATURES", ["a", "b"], {}, r"query must be a sentence \(a str\), got list"),
    ("FEATURES", 3.5, {}, r"query must be a sentence \(a str\), got float"),
    ("FEATURES", "x", {"top_k": 2.7}, "top_k must be a positive integer, got 2.7"),
    ("FEATURES", "x", {"top_k": "3"}, "top_k must be a positive integer, got '3'"),
    ("FEATURES", "x", {"top_k": True}, "top_k must be a positive integer, got True"),
    ("FEATURES", "x", {"top_k": None}, "top_k must be a positive integer, got None"),
    ("FEATURES", "x", {"decomposition": "sequentially"}, "decomposition must be a Decomposition"),
])
def test_ground_names_the_bad_argument(grounder_and_video, video, query, kwargs, message):
    grounder, features = grounder_and_video
    with pytest.raises(InputError, match=message):
        grounder.ground(features if isinstance(video, str) else video, query, **kwargs)


def test_grounder_arguments_are_checked():
    from tfvtg import Grounder

    for kwargs, message in [({"batch_size": 2.5}, "batch_size"), ({"batch_size": "8"}, "batch_size"),
                            ({"stride_seconds": "2"}, "stride_seconds"), ({"model": None}, "model"),
                            ({"dedup_threshold": -1}, "dedup_threshold")]:
        with pytest.raises(InputError, match=message):
            Grounder(**kwargs)


def test_results_and_features_compare_and_print(grounder_and_video):
    grounder, features = grounder_and_video
    result = grounder.ground_details(features, "a hand lifts a cup", top_k=3)
    copy = pickle.loads(pickle.dumps(result))
    assert copy == result
    copy.curves[result.query] = copy.curves[result.query] + 1
    assert copy != result
    assert pickle.loads(pickle.dumps(features)) == features
    assert features != VideoFeatures(features.features[:2], features.timestamps[:2], 1.0, 3.0, "x", (8, 8))
    text = repr(features)
    assert len(text) < 300 and "frames=25" in text and "(25, " in text
    assert len(repr(result)) < 400 and "GroundingResult(query='a hand lifts a cup'" in repr(result)


def test_reference_table_explains_a_higher_score_below_rank_one(grounder_and_video):
    from tfvtg.console import moments_table
    from tfvtg.moment import Moment

    grounder, features = grounder_and_video
    result = grounder.ground_details(features, "a hand lifts a cup", top_k=3)
    assert not any("note:" in line for line in moments_table(result))
    result.moments = [Moment(0.0, 2.0, 1.0), Moment(3.0, 5.0, 1.53)]
    assert not any("note:" in line for line in moments_table(result))  # default profile: no such order
    result.meta["profile"] = "reference"
    assert "(bug B2), so a lower rank can show a higher score" in moments_table(result)[-1]


def test_in_memory_frames_as_a_video(grounder_and_video, tmp_path):
    grounder, _ = grounder_and_video
    clip = make_video(tmp_path / "clip.mp4", n_frames=12, fps=6, size=(32, 32))
    frames, times, duration = read_frames(clip, 3.0, (32, 32))
    from_file = grounder.encode_video(clip)
    from_array = grounder.encode_frames(frames, timestamps=times, duration=duration)
    np.testing.assert_array_equal(from_array.features, from_file.features)  # same frames, same features
    assert from_array.duration == from_file.duration
    assert grounder.ground(from_array, "a dog") == grounder.ground(from_file, "a dog")
    by_rate = grounder.encode_frames(frames, fps=3)
    np.testing.assert_allclose(by_rate.timestamps, np.arange(6) / 3)
    assert by_rate.duration == 2.0
    for kwargs, message in [({}, "time axis once"), ({"fps": 3, "timestamps": times}, "time axis once"),
                            ({"fps": "3"}, "fps must be a positive number"),
                            ({"timestamps": times[::-1]}, "strictly increasing"),
                            ({"timestamps": times[:2]}, "one time per frame"),
                            ({"fps": 3, "duration": 0.5}, "after the last frame")]:
        with pytest.raises(InputError, match=message):
            grounder.encode_frames(frames, **kwargs)
    with pytest.raises(InputError, match="must be uint8"):
        grounder.encode_frames(frames.astype(np.float32), fps=3)
    with pytest.raises(InputError, match=r"\(T, H, W, 3\)"):
        grounder.encode_frames(frames[..., 0], fps=3)


def test_numpro_api_names_the_bad_argument(monkeypatch):
    from numpro import NumProGrounder

    monkeypatch.setenv("OPENAI_API_KEY", "not-used")
    grounder = NumProGrounder("gpt-4o")
    for args, kwargs, message in [((None, "x"), {}, "video must be a video file path.*got NoneType"),
                                  ((np.zeros((2, 8, 8, 3), np.uint8), ["x"]), {}, "query must be a sentence"),
                                  ((np.zeros((2, 8, 8, 3), np.uint8), "x"), {"top_k": "3"}, "top_k must be")]:
        with pytest.raises(InputError, match=message):
            grounder.ground(*args, **kwargs)


def test_top_k_help_says_at_most(capsys):
    for argv in (["ground", "--help"], ["evaluate", "--help"]):
        assert tfvtg_main(argv) == 0
        assert "At most this many" in " ".join(capsys.readouterr().out.split())


def test_library_entry_points_name_the_bad_argument():
    import tfvtg

    cases = [
        (lambda: tfvtg.load_features(None), "path must be a feature file path, got NoneType"),
        (lambda: tfvtg.sample_frames(123), "video must be a video file path, got int"),
        (lambda: tfvtg.sample_frames("clip.mp4", "3"), "fps must be a positive number, got '3'"),
        (lambda: tfvtg.ground_with_scores(None, 10.0, "q"), "score_fn must be a function"),
        (lambda: tfvtg.ground_with_scores(lambda s: np.zeros(30), 10.0, "q", top_k=2.7), "top_k must be"),
        (lambda: tfvtg.Decomposition.single(3), r"query must be a sentence \(a str\), got int"),
        (lambda: tfvtg.Decomposer(3), "llm must be a model name"),
        (lambda: tfvtg.Grounder(use_cache="no"), "use_cache must be True or False"),
        (lambda: tfvtg.ground("clip.mp4", "x", top_k=True), "top_k must be a positive integer, got True"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_evaluate_keeps_predictions_on_ctrl_c(three_clips, tiny_blip2_dir, monkeypatch, capsys):
    from tfvtg.grounder import Grounder

    feats, ann = three_clips
    real = Grounder.ground_details
    calls = []

    def interrupted_on_the_third(self, *args, **kwargs):  # Ctrl-C arrives while the third query is grounded
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Grounder, "ground_details", interrupted_on_the_third)
    out = feats.parent / "run.jsonl"
    argv = ["evaluate", "--dataset", "charades-sta", "--annotations", str(ann), "--features", str(feats),
            "--model", str(tiny_blip2_dir), "--device", "cpu", "--out", str(out)]
    assert tfvtg_main(argv) == 130
    err = capsys.readouterr().err
    partial = feats.parent / "run.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 2 and not out.exists()
    assert f"stopped after 2 queries; their predictions are in {partial}" in err and "interrupted" in err
