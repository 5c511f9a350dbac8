"""`tfvtg app`: the page served on 127.0.0.1 with the tiny model, driven over real HTTP by gradio_client
and by a real headless Chromium (Selenium), plus the app's safety rules.

One app (tiny BLIP-2, the shared clips as --videos, the loopback OpenAI server as NumPro's MLLM, a 1 MB upload
cap) serves the whole module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.openai_server import OpenAIServer, Reply

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tfvtg.app import GroundingApp, SpanSection, host_warning, list_videos, spans_html  # noqa: E402
from tfvtg.errors import InputError  # noqa: E402
from tfvtg.grounder import Grounder  # noqa: E402
from tfvtg.moment import Moment  # noqa: E402

QUERIES = ["a man rides a bike", "a man waits beside a taxi"]


DECOMPOSITION = {
    "reasoning": "two steps",
    "relationship": "sequentially",
    "query_json": [
        {"sub_query_id": 0, "descriptions": ["a man on a bike"]},
        {"sub_query_id": 1, "descriptions": ["a man walks"]},
        {"sub_query_id": 2, "descriptions": ["a man rides"]},
    ],
}


def _llm_replies(request) -> Reply:
    """The LLM ("test-llm") decomposes every query alike; each test queues the MLLM's answers."""
    if request.json.get("model") == "test-llm":
        return Reply(content=json.dumps(DECOMPOSITION))
    return Reply(status=400, body={"error": {"message": "no answer queued", "type": "error"}})


@pytest.fixture(scope="module")
def mllm_server():
    """The loopback OpenAI server: the Ground tab's LLM and the NumPro tab's MLLM."""
    server = OpenAIServer().start()
    server.default = _llm_replies
    yield server
    server.stop()


@pytest.fixture(scope="module")
def index_dir(tiny_features_dir, tmp_path_factory) -> Path | None:
    """A collection index of the shared clips' tiny features (None without FAISS, the [search] extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return None
    from tfvtg.index import Collection

    folder = tmp_path_factory.mktemp("index") / "idx"
    Collection.open(folder).add([tiny_features_dir])
    return folder


@pytest.fixture(scope="module")
def served(tiny_blip2_dir, shared_videos, mllm_server, index_dir, tmp_path_factory):
    """(app, client): the page on 127.0.0.1 and a gradio_client connected to it over HTTP."""
    grounder = Grounder(str(tiny_blip2_dir), device="cpu", use_cache=False, progress=False, llm="test-llm",
                        llm_base_url=mllm_server.base_url)
    app = GroundingApp(grounder, videos=shared_videos, index=index_dir, mllm="test-mllm",
                       mllm_base_url=mllm_server.base_url, top_k=3, max_upload_mb=1.0)
    url = app.launch("127.0.0.1", None, block=False, quiet=True)
    assert url.startswith("http://127.0.0.1:") and not app.demo.share and app.demo.share_url is None
    client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("client")))
    yield app, client
    workdir = app.workdir
    app.close()
    assert not workdir.exists(), "the app's temporary folder outlived it"


@pytest.fixture(scope="module")
def reference(tiny_blip2_dir, mllm_server):
    """The same tiny model and LLM as a plain Grounder: what the page must agree with."""
    return Grounder(str(tiny_blip2_dir), device="cpu", use_cache=False, progress=False, llm="test-llm",
                    llm_base_url=mllm_server.base_url)


def _ground(client: Client, video: str | None, picked: str | None, queries: list[str], top_k: int = 3):
    upload = handle_file(video) if video else None
    return client.predict(upload, picked, "\n".join(queries), top_k, api_name="/ground")


def test_upload_ground_two_queries_matches_grounder(served, reference, shared_videos):
    app, client = served
    clip = shared_videos / "bikes.mp4"
    status, spans, curves, predictions, download = _ground(client, str(clip), None, QUERIES)
    assert "features ready" in status and "bikes.mp4" in status
    assert [p["query"] for p in predictions] == QUERIES
    sections = spans.split('<div class="tfvtg-result">')[1:]
    for prediction, query, section in zip(predictions, QUERIES, sections, strict=True):
        expected = [m.to_list(4) for m in reference.ground(clip, query, top_k=3)]
        assert prediction["pred_relevant_windows"] == expected
        for start, end, _ in expected:  # each span is a clickable element of the list and of the timeline
            assert section.count(f'data-start="{start:.3f}" data-end="{end:.3f}"') == 2
        assert prediction["meta"]["method"] == "full" and prediction["decomposition"]["source"] == "llm"
        assert "decomposition: sequentially" in section and "sub-event 2: a man rides" in section
    assert len(curves) == 2
    lines = [json.loads(line) for line in Path(download).read_text(encoding="utf-8").splitlines()]
    assert lines == predictions
    assert list(app.workdir.rglob("bikes.mp4")), "the upload is not in the app's own folder"
    # The same video again: no encoding, the text side alone, and the page says so.
    encodings = app.encodings
    status, *_ = _ground(client, str(clip), None, QUERIES[:1])
    assert app.encodings == encodings
    assert "Already encoded" in status and "text side alone" in status


def test_errors_are_page_messages_and_serving_goes_on(served, tmp_path, mllm_server):
    app, client = served
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n", encoding="utf-8")
    with pytest.raises(AppError) as error:
        _ground(client, str(not_video), None, ["a man"])
    message = str(error.value)
    assert "notes.mp4" in message and "Traceback" not in message
    with pytest.raises(AppError, match="no query given"):
        _ground(client, None, "bikes.mp4", ["   "])
    with pytest.raises(AppError, match="no video"):
        _ground(client, None, None, ["a man"])
    mllm_server.queue(Reply(status=400, body={"error": {"message": "model is down", "type": "error"}}))
    with pytest.raises(AppError, match="test-mllm"):
        client.predict(None, "bikes.mp4", "a man", 1.0, 5, 1, api_name="/numpro")
    # The next request is served as usual.
    *_, predictions, _ = _ground(client, None, "bikes.mp4", ["a man"])
    assert predictions[0]["pred_relevant_windows"]


def test_upload_size_cap(served, shared_videos):
    _, client = served
    assert (shared_videos / "cup.mp4").stat().st_size > 2**20
    with pytest.raises(Exception, match="(?i)too large|exceed|413|size"):
        _ground(client, str(shared_videos / "cup.mp4"), None, ["a cup"])
    # The same file picked under --videos is no upload: no cap.
    *_, predictions, _ = _ground(client, None, "cup.mp4", ["a cup"])
    assert predictions[0]["vid"] == "cup"


def test_only_videos_under_videos_can_be_picked(served, shared_videos, tmp_path):
    app, client = served
    assert app.video_names == list_videos(shared_videos) == ["bigbuckbunny.mp4", "bikes.mp4", "cup.mp4"]
    shown = client.predict("bikes.mp4", api_name="/pick")
    assert Path(shown).read_bytes() == (shared_videos / "bikes.mp4").read_bytes()
    assert [p.name for p in (app.workdir / "served").rglob("*.mp4")] == ["bikes.mp4"]
    for path in (shared_videos / "videos.json", shared_videos / "cup.mp4"):  # never served as they are
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{app.demo.local_url}gradio_api/file={path}", timeout=10)
    with pytest.raises(AppError):
        client.predict("../shared/videos.json", api_name="/pick")
    for name in ("../videos/bikes.mp4", "/etc/passwd", "videos.json"):
        with pytest.raises(InputError, match="not one of the videos"):
            app.source_video(None, name)
    outside = tmp_path / "clip.mp4"
    shutil.copy(shared_videos / "bikes.mp4", outside)
    with pytest.raises(InputError, match="only uploaded videos"):
        app.source_video(str(outside), None)


def test_two_requests_for_one_video_encode_it_once(served):
    app, client = served
    app._memo.clear()
    encodings = app.encodings
    jobs = [client.submit(None, "bigbuckbunny.mp4", "\n".join(QUERIES), 2, api_name="/ground")
            for _ in range(2)]
    first, second = (job.result(timeout=120) for job in jobs)
    assert app.encodings == encodings + 1
    assert [p["pred_relevant_windows"] for p in first[3]] == [p["pred_relevant_windows"] for p in second[3]]
    statuses = sorted("Already encoded" in status for status in (first[0], second[0]))
    assert statuses == [False, True], "one request encodes, the other answers from memory"


def test_an_upload_is_hashed_once_per_version(served, shared_videos, monkeypatch):
    """Two uploads of one file share a key (their content); a second question does not read it again."""
    import hashlib

    app, _ = served
    uploads = app.workdir / "upload-test"
    uploads.mkdir(exist_ok=True)
    first, second = uploads / "a.mp4", uploads / "b.mp4"
    for copy in (first, second):
        shutil.copy(shared_videos / "bikes.mp4", copy)
    hashed = []
    real_sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: hashed.append(1) or real_sha256(*a))
    key = app._video_key(first)
    assert key.startswith("sha256:") and app._video_key(second) == key and len(hashed) == 2
    assert app._video_key(first) == key and len(hashed) == 2, "asked again: answered without reading"
    with first.open("ab") as stream:  # a new version of the file is hashed again
        stream.write(b"\0")
    assert app._video_key(first) != key and len(hashed) == 3


def test_encoding_lock_threads(served, shared_videos):
    """Many threads asking for one new video at once: one encoding, one features object."""
    app, _ = served
    clip = shared_videos / "bigbuckbunny.mp4"
    app._memo.clear()
    encodings, got = app.encodings, []
    threads = [threading.Thread(target=lambda: got.append(app.features(clip))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert app.encodings == encodings + 1
    assert len({id(features) for features, _ in got}) == 1
    assert sorted(seconds is None for _, seconds in got) == [False, True, True, True]


def test_numpro_gallery_answer_and_spans(served, mllm_server, shared_videos):
    from numpro.ground import NumProGrounder
    from numpro.mllm import create_mllm

    _, client = served
    mllm_server.queue("From Frame 2 to Frame 5.", "From Frame 2 to Frame 5.")
    before = len(mllm_server.requests)
    status, gallery, answer, spans, details = client.predict(None, "bikes.mp4", "a man rides a bike", 1.0,
                                                             100, 3, api_name="/numpro")
    assert len(mllm_server.requests[before].images()) == len(gallery) == 10  # 10 s at 1 fps
    assert [item["caption"].split(" ")[0] for item in gallery] == [str(i) for i in range(10)]
    assert "From Frame 2 to Frame 5" in answer
    direct = NumProGrounder(create_mllm("test-mllm", base_url=mllm_server.base_url), fps=1.0, size=(336, 336),
                            max_frames=100).ground(shared_videos / "bikes.mp4", "a man rides a bike", top_k=3)
    assert details["pred_relevant_windows"] == [m.to_list() for m in direct]
    start, end, _ = details["pred_relevant_windows"][0]
    assert f'data-start="{start:.3f}" data-end="{end:.3f}"' in spans
    assert "10 numbered frames" in status


def test_search_lists_the_collections_best_moments(served, reference, index_dir, mllm_server):
    from tfvtg.index import Collection

    if index_dir is None:
        pytest.skip("the Search tab needs FAISS, the [search] extra")
    _, client = served
    status, gallery, hits = client.predict(QUERIES[0], 5, api_name="/search")
    expected = Collection.open(index_dir).search(QUERIES[0], top_k=5, grounder=reference)
    assert hits == [hit.to_dict() for hit in expected]
    assert [item["caption"].split(" ")[:2] for item in gallery] == [[f"#{h.rank}", h.video] for h in expected]
    assert "5 moments from 3 indexed videos" in status
    with pytest.raises(AppError, match="empty query"):
        client.predict("  ", 5, api_name="/search")


def test_numpro_without_mllm_shows_numbered_frames(served, shared_videos):
    app, _ = served
    report = app.numpro(shared_videos / "bikes.mp4", None, 2.0, 7, 1)
    assert report.details is None and len(report.frames) == 7 and report.frames.shape[1:] == (336, 336, 3)
    assert report.times[0] == 0.0 and report.times[-1] > 9.0  # spread over the clip, first and last kept
    red = (report.frames[..., 0] > 200) & (report.frames[..., 1] < 60) & (report.frames[..., 2] < 60)
    assert red[:, 250:, 250:].any(axis=(1, 2)).all(), "every frame carries its number, bottom right"


def test_spans_html_escapes_and_places_bars():
    moments = [Moment(2.0, 4.0, 0.9), Moment(5.0, 10.0, 0.1)]
    html = spans_html([SpanSection("<b>q</b>", "note & more", 10.0, moments)])
    assert "<b>q</b>" not in html and "&lt;b&gt;q&lt;/b&gt;" in html and "note &amp; more" in html
    assert "left:20.00%;width:20.00%" in html and "left:50.00%;width:50.00%" in html


def test_host_warning():
    for host in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"):
        assert host_warning(host) is None
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        assert "not a loopback address" in host_warning(host)


def test_close_removes_the_folder_and_restores_gradio_temp_dir(tiny_blip2_dir, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/somewhere/else")
    app = GroundingApp(Grounder(str(tiny_blip2_dir), device="cpu", use_cache=False))
    app.launch("127.0.0.1", None, block=False, quiet=True)
    assert os.environ["GRADIO_TEMP_DIR"] == str(app.workdir) and app.workdir.is_dir()
    app.close()
    assert not app.workdir.exists() and os.environ["GRADIO_TEMP_DIR"] == "/somewhere/else"


def test_cli_without_the_extra_is_one_line(monkeypatch, capsys):
    from tfvtg.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` does when it is not installed
    assert main(["app"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: the app needs gradio, the [app] extra: pip install -e ".[app]"']


def test_importing_tfvtg_and_its_cli_does_not_import_gradio():
    code = "import sys, tfvtg, tfvtg.cli; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ the browser
def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Chromium and ChromeDriver are needed (Debian: chromium, chromium-driver)")
    return browser, driver


def test_browser_upload_query_click_span_plays_it(served, shared_videos, index_dir, reference, tmp_path):
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = _chromium()
    app, _ = served
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,1250", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        wait = WebDriverWait(driver, 90)
        driver.get(app.demo.local_url)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#tfvtg-player input[type=file]"))
        upload.send_keys(str(shared_videos / "bikes.mp4"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tfvtg-player video"))
        driver.find_element(By.CSS_SELECTOR, "#tfvtg-queries textarea").send_keys("\n".join(QUERIES))
        driver.find_element(By.CSS_SELECTOR, "#tfvtg-ground").click()
        first = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#tfvtg-spans .tfvtg-span"))
        start, end = float(first.get_attribute("data-start")), float(first.get_attribute("data-end"))
        wait.until(lambda d: d.execute_script("return document.querySelector('#tfvtg-player video')"
                                              ".readyState") >= 1)
        first.click()
        player = "document.querySelector('#tfvtg-player video')"
        wait.until(lambda d: d.execute_script(f"return !{player}.seeking && {player}.currentTime > 0"
                                              f" || {start} === 0"))
        now = driver.execute_script(f"return {player}.currentTime")
        assert start <= now <= end, f"player at {now} s, outside the clicked span {start}-{end} s"
        assert driver.execute_script("return !!document.querySelector('#tfvtg-status').textContent"
                                     ".includes('bikes.mp4')")
        screenshot = tmp_path / "app.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        if index_dir is not None:
            _search_and_play_a_hit(driver, wait, index_dir, reference)
    finally:
        driver.quit()


def _search_and_play_a_hit(driver, wait, index_dir, reference) -> None:
    """Search tab: run a search, click a moment of another video than the player's, not at its start, and the
    player plays that video at that span."""
    from selenium.webdriver.common.by import By

    from tfvtg.index import Collection

    hits = Collection.open(index_dir).search(QUERIES[0], top_k=8, grounder=reference)
    best = next(h for h in hits if h.start > 0.5 and Path(h.source).name != "bikes.mp4")
    driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Search')]").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#tfvtg-search-query textarea").is_displayed())
    driver.find_element(By.CSS_SELECTOR, "#tfvtg-search-query textarea").send_keys(QUERIES[0])
    search_k = driver.find_element(By.CSS_SELECTOR, "#tfvtg-search-k input[type=number]")
    search_k.clear()
    search_k.send_keys(str(len(hits)))
    driver.find_element(By.CSS_SELECTOR, "#tfvtg-search").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tfvtg-hits img")) == len(hits))
    driver.find_elements(By.CSS_SELECTOR, "#tfvtg-hits img")[best.rank - 1].click()
    player = "document.querySelector('#tfvtg-player video')"
    name = Path(best.source).name
    wait.until(lambda d: d.execute_script(
        f"const v = {player}; return !!v && (v.currentSrc || '').endsWith('/{name}') && v.readyState >= 1"
        f" && !v.seeking && Math.abs(v.currentTime - {best.start}) < {best.end - best.start}"))
    now = driver.execute_script(f"return {player}.currentTime")
    assert best.start <= now <= best.end, f"player at {now} s, outside the hit {best.start}-{best.end} s"


def test_cli_serves_the_page_and_cleans_up_when_killed(tiny_blip2_dir, shared_videos):
    import re
    import signal
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tfvtg.cli", "app", "--model", str(tiny_blip2_dir), "--device", "cpu",
               "--no-cache", "--videos", str(shared_videos), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 120, None
        while page is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode("utf-8", "replace")
            except OSError:
                time.sleep(0.5)
        failed = process.stderr.read() if process.poll() is not None else "no page in 120 s"
        assert page is not None and "tfvtg" in page, failed
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, 130), err  # 130 ("interrupted") when the kill came while still starting
    folder = re.search(r"uploads and results go to (\S+) until", err)
    assert folder, err
    assert not Path(folder.group(1)).exists()
    assert "Traceback" not in err
