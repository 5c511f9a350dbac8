"""The Ray engine on a local Ray cluster started by these tests (2 CPUs, a capped object store): the same
files as the local engine, long videos in chunks, a corrupt video among good ones, a killed encoder actor,
resume.

Files are compared bitwise with the local engine's made with one torch thread: a Ray actor with one CPU runs
torch on one thread (OMP_NUM_THREADS=1), and torch's CPU results depend on the thread count (with 2 threads,
about 0.2 % of the float16 values differ by 1-3 steps), not on the batch size or on which video shares a
batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures.encoders import TinyBlip2Factory
from tests.fixtures.videos import make_non_media, make_video
from tfvtg.cli import main
from tfvtg.engines import extract_many
from tfvtg.features import VideoFeatures

ray = pytest.importorskip("ray")

from tfvtg.engines.ray import RayEngine  # noqa: E402 (needs ray)

OBJECT_STORE = 120 * 2**20


def assert_same_features(path_a: Path, path_b: Path) -> None:
    a, b = VideoFeatures.load(path_a), VideoFeatures.load(path_b)
    assert a.metadata() == b.metadata()
    assert a.timestamps.tobytes() == b.timestamps.tobytes()
    assert a.features.tobytes() == b.features.tobytes(), f"{path_a.name}: features differ"


@contextlib.contextmanager
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _ray_processes(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_ray_started_by_tfvtg_lives_in_the_run_folder_and_is_shut_down():
    assert not ray.is_initialized()
    before = os.environ.get("RAY_TMPDIR")
    with RayEngine(object_store_bytes=OBJECT_STORE) as engine:
        engine._ray()
        root = os.environ["RAY_TMPDIR"]
        assert ray.is_initialized() and Path(root).is_dir()
        assert _ray_processes(root)  # the raylet and friends run from the run's folder
    assert not ray.is_initialized() and os.environ.get("RAY_TMPDIR") == before
    assert not Path(root).exists()
    deadline = time.monotonic() + 15
    while _ray_processes(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _ray_processes(root), "Ray processes left behind"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """ray.init(num_cpus=2) with a capped object store; workers import tests/ from this checkout."""
    root = tmp_path_factory.mktemp("ray")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "RAY_TMPDIR": str(root)}
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    ray.init(num_cpus=2, object_store_memory=OBJECT_STORE, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(root))
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_videos):
    folder = tmp_path_factory.mktemp("ray_inputs")
    for name in ("bikes", "cup", "bigbuckbunny"):
        (folder / f"{name}.mp4").symlink_to(shared_videos / f"{name}.mp4")
    make_video(folder / "long.mp4", n_frames=200, fps=25, patterns=range(200))  # 8 s: 24 samples
    make_non_media(folder / "broken.mp4")
    return folder


@pytest.fixture(scope="module")
def local_run(inputs, tiny_blip2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local_out")
    with one_torch_thread():
        summary = extract_many([inputs], out, model=str(tiny_blip2_dir), progress=False)
    assert sorted(summary.extracted) == ["bigbuckbunny", "bikes", "cup", "long"]
    return out


def test_ray_writes_the_local_engines_files_and_reports_the_corrupt_video(
    ray_cluster, inputs, local_run, tiny_blip2_dir, tmp_path
):
    engine = RayEngine(chunk_frames=5)  # long.mp4 leaves its decode task in 5 chunks
    summary = extract_many([inputs], tmp_path, engine=engine, model=str(tiny_blip2_dir), progress=False)
    assert sorted(summary.extracted) == ["bigbuckbunny", "bikes", "cup", "long"]
    assert list(summary.failed) == ["broken"] and summary.failed["broken"].startswith("cannot open")
    report = json.loads((tmp_path / "extract_failures.json").read_text())
    assert report["engine"] == "ray" and [f["id"] for f in report["failed"]] == ["broken"]
    for vid in summary.extracted:
        assert_same_features(local_run / f"{vid}.safetensors", tmp_path / f"{vid}.safetensors")
    decode_pids, encode_pids = engine.last_pids
    assert decode_pids and encode_pids and not decode_pids & encode_pids  # decoding was not fused into actors
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bigbuckbunny.safetensors", "bikes.safetensors", "cup.safetensors", "extract_failures.json",
        "long.safetensors"]


def test_a_killed_actor_is_replaced_and_dedup_holds_across_chunks(
    ray_cluster, inputs, repeated_video, tiny_blip2_dir, tmp_path
):
    marker = tmp_path / "killed"
    videos = [repeated_video, inputs / "cup.mp4"]
    with one_torch_thread():
        local = extract_many(videos, tmp_path / "local", model=TinyBlip2Factory(str(tiny_blip2_dir)),
                             dedup_threshold=2.0, progress=False)
    dying = TinyBlip2Factory(str(tiny_blip2_dir), die_once=str(marker))
    summary = extract_many(videos, tmp_path / "ray", engine=RayEngine(chunk_frames=2), model=dying,
                           dedup_threshold=2.0, progress=False)
    assert marker.exists(), "no actor process was killed"
    assert sorted(summary.extracted) == sorted(local.extracted) == ["cup", "repeated"]
    for vid in summary.extracted:
        name = f"{vid}.safetensors"
        assert_same_features(tmp_path / "local" / name, tmp_path / "ray" / name)
    assert VideoFeatures.load(tmp_path / "ray" / "repeated.safetensors").skipped_frames == 9


def test_cli_resume_on_ray_after_an_interrupted_run(ray_cluster, inputs, local_run, tiny_blip2_dir, tmp_path,
                                                    capsys):
    out = tmp_path / "out"
    out.mkdir()
    good = [name for name in ("bikes", "cup", "long")]
    for vid in good:
        (out / f"{vid}.safetensors").write_bytes((local_run / f"{vid}.safetensors").read_bytes())
    # What an interrupted run leaves: a missing file, a stray temp file; and a file truncated by a copy.
    (out / "cup.safetensors").unlink()
    (out / ".cup.safetensors.abc123.tmp").write_bytes(b"partial")
    data = (out / "bikes.safetensors").read_bytes()
    (out / "bikes.safetensors").write_bytes(data[: len(data) // 2])
    videos = [str(inputs / f"{vid}.mp4") for vid in ("bigbuckbunny", *good)]
    code = main(["extract", *videos, "--out", str(out), "--engine", "ray", "--skip-existing", "--fps", "3",
                 "--model", str(tiny_blip2_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skip long.mp4: long.safetensors exists" in captured.out
    assert "redo bikes.mp4: existing bikes.safetensors unreadable" in captured.out
    assert "extracted 3, skipped 1, failed 0 of 4 videos" in captured.out
    for vid in ("bigbuckbunny", *good):
        assert_same_features(local_run / f"{vid}.safetensors", out / f"{vid}.safetensors")


def test_ray_resume_with_fps_checks_the_precision_files_record(ray_cluster, inputs, local_run, tiny_blip2_dir,
                                                              tmp_path, capsys):
    """An explicit --dtype is known before Ray starts; without one, the workers' devices decide it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "cup.safetensors").write_bytes((local_run / "cup.safetensors").read_bytes())  # float32, on CPU
    resume = ["extract", str(inputs / "cup.mp4"), "--out", str(out), "--engine", "ray", "--skip-existing",
              "--fps", "3", "--model", str(tiny_blip2_dir)]
    assert main([*resume, "--dtype", "bf16"]) == 0
    assert ("redo cup.mp4: existing cup.safetensors made with precision 'float32', not 'bfloat16'"
            in capsys.readouterr().out)
    assert VideoFeatures.load(out / "cup.safetensors").precision == "bfloat16"
    assert main(resume) == 0  # auto: a CPU worker computes in float32
    assert ("redo cup.mp4: existing cup.safetensors made with precision 'bfloat16', not 'float32'"
            in capsys.readouterr().out)
    assert_same_features(local_run / "cup.safetensors", out / "cup.safetensors")


def test_an_address_where_nothing_answers_is_one_error_line_within_seconds(cup_video, tmp_path):
    """`ray.init` would retry a dead address for minutes; the engine asks the port first."""
    import subprocess

    from tfvtg.engines.ray import _check_reachable
    from tfvtg.errors import InputError

    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(InputError, match=rf"^cannot connect to the Ray cluster at {address}: nothing "
                                             r"answers at 127.0.0.1:1 \(Connection refused\)$"):
            _check_reachable(address)
    _check_reachable("auto")  # Ray's to resolve
    run = subprocess.run([sys.executable, "-m", "tfvtg.cli", "extract", str(cup_video), "--out",
                          str(tmp_path / "out"), "--engine", "ray", "--address", "127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr == ("error: cannot connect to the Ray cluster at 127.0.0.1:1: nothing answers at "
                          "127.0.0.1:1 (Connection refused)\n")


def test_the_command_on_its_own_ray_prints_tfvtgs_lines_not_rays(cup_video, tiny_blip2_dir, tmp_path):
    import subprocess

    run = subprocess.run([sys.executable, "-m", "tfvtg.cli", "extract", str(cup_video), "--out",
                          str(tmp_path / "out"), "--engine", "ray", "--model", str(tiny_blip2_dir)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "extracted 1, skipped 0, failed 0 of 1 video"
    for chatter in ("Token authentication is enabled", "Started a local Ray instance",
                    "Progress bars disabled", "execution finished"):
        assert chatter not in run.stderr


def test_ray_chatter_is_kept_off_the_console_and_its_warnings_are_not():
    import logging

    from tfvtg.engines.ray import _QuietRay

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("ray.data", level, __file__, 1, message, None, None)

    chatter = ["Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.",
               "Started a local Ray instance.", "Progress bars disabled. To enable, set ...",
               "✔️  Dataset dataset_035A_0 execution finished in 5.75 seconds"]
    quiet, run = _QuietRay(errors=False), _QuietRay(errors=True)
    assert not any(quiet.filter(record(logging.INFO, line)) for line in chatter)
    warning = record(logging.WARNING, "Cluster resources are not enough to run any task from ActorPoolMap")
    assert quiet.filter(warning) and run.filter(warning)
    failed = record(logging.ERROR, "Exception raised in creation task")
    assert quiet.filter(failed) and not run.filter(failed)


def test_engine_ray_without_ray_is_one_error_line(cup_video, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["extract", str(cup_video), "--out", str(tmp_path), "--engine", "ray"]) == 1
    assert capsys.readouterr().err == 'error: --engine ray needs Ray Data: pip install -e ".[ray]"\n'


def test_an_encoder_error_raised_in_an_actor_reaches_the_user_as_itself():
    from tfvtg.engines.ray import _tfvtg_error
    from tfvtg.errors import ModelError

    class RayWrapper(Exception):  # Ray's task errors carry the user's exception as .cause
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    error = ModelError("encoder 'x' returned shape (3,) for 4 frames")
    try:
        try:
            raise RayWrapper(error)
        except RayWrapper as wrapped:
            raise RuntimeError("dataset failed") from wrapped
    except RuntimeError as outer:
        assert _tfvtg_error(outer) is error
    plain = RuntimeError("a bug")
    assert _tfvtg_error(plain) is plain


def test_the_driver_reads_the_encoder_config_from_the_checkpoint_without_loading_it(
    ray_cluster, tiny_blip2_dir, tmp_path
):
    from tfvtg.encoders import create_encoder
    from tfvtg.engines.base import ExtractSettings
    from tfvtg.engines.ray import _checkpoint_config

    loaded = create_encoder(str(tiny_blip2_dir), device="cpu").config
    settings = ExtractSettings(model=str(tiny_blip2_dir))
    assert _checkpoint_config(settings, gpus=0) == (
        loaded.name, tuple(loaded.image_size), loaded.default_fps, loaded.num_query_tokens, loaded.embed_dim,
        loaded.precision)
    assert loaded.precision == "float32"
    assert _checkpoint_config(settings, gpus=1)[5] == "autocast-float16"  # what an actor with a GPU picks
    bf16 = ExtractSettings(model=str(tiny_blip2_dir), dtype="bf16")
    assert _checkpoint_config(bf16, gpus=1)[5] == "bfloat16"
    assert _checkpoint_config(ExtractSettings(model=TinyBlip2Factory(str(tiny_blip2_dir))), gpus=0) is None
    # No model load: the engine answers for a directory whose weights are missing (a load would fail).
    broken = tmp_path / "no_weights"
    shutil.copytree(tiny_blip2_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    config = RayEngine().encoder_config(ExtractSettings(model=str(broken)))
    assert (config.name, tuple(config.image_size), config.precision) == (
        str(broken), tuple(loaded.image_size), "float32")


@pytest.mark.parametrize("checkpoint", ["tiny_clip_dir", "tiny_siglip2_dir"])
def test_the_checkpoint_config_is_the_loaded_encoders_for_every_family(checkpoint, request):
    """CLIP's centre crop and SigLIP 2's sizes read from JSON as the loaded encoders report them."""
    from tfvtg.encoders import create_encoder
    from tfvtg.engines.base import ExtractSettings
    from tfvtg.engines.ray import _checkpoint_config

    path = str(request.getfixturevalue(checkpoint))
    loaded = create_encoder(path, device="cpu").config
    assert _checkpoint_config(ExtractSettings(model=path, device=" CPU "), gpus=0) == (
        loaded.name, tuple(loaded.image_size), loaded.default_fps, loaded.num_query_tokens, loaded.embed_dim,
        loaded.precision)


def test_a_model_that_cannot_load_in_the_actors_is_one_error_line(
    ray_cluster, inputs, tiny_blip2_dir, tmp_path, capfd
):
    broken = tmp_path / "no_weights"
    shutil.copytree(tiny_blip2_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    out = tmp_path / "out"
    code = main(["extract", str(inputs / "cup.mp4"), "--out", str(out), "--engine", "ray", "--model",
                 str(broken)])
    err = capfd.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if "error:" in line.lower() or "Traceback" in line]
    assert errors == [f"error: cannot load {broken}: the directory is incomplete (Error no file named "
                      f"model.safetensors, or pytorch_model.bin, found in directory {broken}.); pass --model "
                      f"a directory written by save_pretrained"], err
    assert not list(out.glob("*.safetensors"))
    # The run's changes to Ray Data's process-wide settings and logging are undone after a failure too.
    import logging

    from tfvtg.engines.ray import _QuietRay

    assert not ray.data.DataContext.get_current().raise_original_map_exception
    handlers = [h for name in ("ray", "ray.data") for h in logging.getLogger(name).handlers]
    assert not any(isinstance(f, _QuietRay) for h in handlers for f in h.filters)


def test_decode_tasks_fill_the_cluster_cpus_and_impossible_shares_are_refused(ray_cluster):
    from tfvtg.errors import InputError

    assert RayEngine()._decode_cpus(ray, workers=1) == 0.5  # 2 CPUs: two decoders beside one actor
    assert RayEngine(decode_cpus=1)._decode_cpus(ray, workers=1) == 1.0
    with pytest.raises(InputError, match="--decode-cpus 1.5 but only 1 of the Ray cluster's 2 CPUs"):
        RayEngine(decode_cpus=1.5)._decode_cpus(ray, workers=1)
    with pytest.raises(InputError, match="2 encoder actors take one each, leaving none to decode with"):
        RayEngine()._decode_cpus(ray, workers=2)
