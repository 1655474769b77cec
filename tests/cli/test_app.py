"""``artok app``: the demo server's endpoints, its refusals (one-line JSON 400s, never a traceback),
determinism, the command's start/stop behaviour, and the page driven by a real headless browser."""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artok.app import DemoService, make_server, server_url
from artok.cli import app as app_command
from artok.cli import main as cli_main
from artok.generators import RasterConfig, RasterGenerator
from artok.hub import save_pretrained

CLASS_NAMES = ["circle", "square", "triangle"]
TOKENS_PER_IMAGE = 16  # the tiny tokenizer's 4 x 4 grid
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def model_folders(tmp_path, tiny_tokenizer):
    """A saved tiny tokenizer (8 x 8 images, 4 x 4 tokens) and an untrained raster generator on it."""
    tokenizer_dir = save_pretrained(tiny_tokenizer, tmp_path / "tokenizer")
    config = RasterConfig(token_spec=tiny_tokenizer.spec.to_dict(), num_classes=len(CLASS_NAMES), dim=32, depth=1,
                          num_heads=2, dropout=0.0)
    extra = {"tokenizer": str(tokenizer_dir), "class_names": CLASS_NAMES,
             "sampling": {"kind": "raster", "temperature": 0.9, "top_k": 0, "top_p": 1.0, "cfg_scale": 2.0}}
    generator_dir = save_pretrained(RasterGenerator(config).eval(), tmp_path / "generator", extra=extra)
    return generator_dir, tokenizer_dir


@pytest.fixture
def served(model_folders):
    """A `DemoServer` on a free port, serving in a thread; yields (url, server)."""
    server = make_server(DemoService.load(model_folders[0]), "127.0.0.1", 0, log_requests=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_url(server), server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def fetch(url: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, or of a POST when ``body`` is given; HTTP errors too."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def post_sample(url: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, data = fetch(url + "api/sample", body)
    return status, json.loads(data)


def decoded_png(result: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(result["png"])))
    assert image.format == "PNG"
    return image


def parse_command(argv: list[str]) -> argparse.Namespace:
    """The command's arguments as ``artok`` parses them (through main's parser once it lists the module)."""
    if "artok.cli.app" in cli_main.PLUGIN_MODULES:
        return cli_main.build_parser().parse_args(argv)
    parser = argparse.ArgumentParser(prog="artok")
    app_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def assert_one_line_error(status: int, result: dict, expected_status: int = 400) -> str:
    assert status == expected_status, result
    message = result["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Endpoints


def test_page_is_served_without_external_assets(served):
    url, _ = served
    status, content_type, body = fetch(url)
    page = body.decode("utf-8")
    assert status == 200 and content_type.startswith("text/html")
    for element in ('id="label"', 'id="cfg_scale"', 'id="temperature"', 'id="top_k"', 'id="top_p"', 'id="seed"',
                    'id="count"', 'id="sampler"', 'id="generate"', 'id="grid"', 'id="timing"', 'id="error"'):
        assert element in page, element
    assert "<link" not in page and 'src="http' not in page and "@import" not in page


def test_info_lists_kind_classes_options_and_stored_defaults(served):
    url, _ = served
    status, content_type, body = fetch(url + "api/info")
    info = json.loads(body)
    assert status == 200 and content_type == "application/json"
    assert info["kind"] == "raster" and info["classes"] == CLASS_NAMES and info["samplers"] == ["plain", "engine"]
    assert info["options"] == ["cfg_scale", "temperature", "top_k", "top_p"]
    assert info["defaults"] == {"label": 0, "seed": 0, "count": 8, "sampler": "plain", "cfg_scale": 2.0,
                                "temperature": 0.9, "top_k": 0, "top_p": 1.0}
    assert info["limits"]["count"] == [1, 64] and info["limits"]["label"] == [0, 2]
    assert info["tokens_per_image"] == TOKENS_PER_IMAGE


def test_sample_returns_a_png_grid_of_the_right_size(served):
    url, _ = served
    status, result = post_sample(url, {"label": 2, "cfg_scale": 1.5, "temperature": 1.0, "top_k": 8, "top_p": 0.9,
                                       "seed": 3, "count": 3, "sampler": "plain"})
    assert status == 200, result
    image = decoded_png(result)
    # 8 x 8 cells are upscaled x8 (64 px); 2 px padding around and between cells, scaled too.
    assert image.size == (result["width"], result["height"]) == ((3 * 10 + 2) * 8, (10 + 2) * 8)
    assert result["tokens"] == 3 * TOKENS_PER_IMAGE and result["count"] == 3
    assert result["class_name"] == "triangle" and result["seconds"] > 0
    status, result = post_sample(url, {"label": 0, "seed": 0, "count": 10})  # 8 per row: two rows
    assert status == 200 and decoded_png(result).size == ((8 * 10 + 2) * 8, (2 * 10 + 2) * 8)


def test_same_seed_gives_the_same_image_bytes(served):
    url, _ = served
    request = {"label": 1, "seed": 11, "count": 4, "temperature": 1.0}
    first, second = post_sample(url, request)[1], post_sample(url, request)[1]
    other = post_sample(url, {**request, "seed": 12})[1]
    assert first["png"] == second["png"]
    assert other["png"] != first["png"]


def test_the_engine_sampler_gives_the_plain_loop_images_on_cpu(served):
    url, _ = served
    request = {"label": 2, "seed": 4, "count": 3, "top_k": 5}
    plain = post_sample(url, {**request, "sampler": "plain"})[1]
    engine = post_sample(url, {**request, "sampler": "engine"})[1]
    assert engine["sampler"] == "engine" and engine["png"] == plain["png"]


BAD_REQUESTS = [
    (b'{"cfg_scale": NaN}', "cfg_scale must be a finite number"),
    (b'{"temperature": Infinity}', "temperature must be a finite number"),
    (b'{"top_p": -Infinity}', "top_p must be a finite number"),
    (b'{"cfg_scale": 1e999}', "cfg_scale must be a finite number"),
    ({"count": -1}, "count must lie in [1, 64]"),
    ({"count": 0}, "count must lie in [1, 64]"),
    ({"count": 65}, "count must lie in [1, 64]"),
    ({"count": 2.5}, "count must be an integer"),
    ({"label": 3}, "label must lie in [0, 2]"),
    ({"label": -1}, "label must lie in [0, 2]"),
    ({"label": True}, "label must be a number"),
    ({"label": "1"}, "label must be a number"),
    ({"seed": -1}, "seed must lie in"),
    ({"seed": 2**80}, "seed must lie in"),
    ({"seed": None}, "seed must be a number, got null"),
    ({"temperature": 0}, "temperature must lie in"),
    ({"temperature": -0.5}, "temperature must lie in"),
    ({"top_p": 0}, "top_p must lie in"),
    ({"top_p": 1.5}, "top_p must lie in"),
    ({"top_k": -3}, "top_k must lie in"),
    ({"top_k": 1.5}, "top_k must be an integer"),
    ({"cfg_scale": -1}, "cfg_scale must lie in"),
    ({"sampler": "speculative"}, "sampler must be one of plain, engine"),
    ({"iterations": 4}, "unknown field(s)"),
    ([1, 2], "must be a JSON object"),
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[" * 100_000, "larger than"),
]


def test_bad_input_is_a_one_line_400(served):
    url, _ = served
    for payload, expected in BAD_REQUESTS:
        status, result = post_sample(url, payload)
        message = assert_one_line_error(status, result, 413 if expected == "larger than" else 400)
        assert expected in message, (payload, message)


def test_a_post_without_content_length_is_a_400(served):
    _, server = served
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("POST", "/api/sample")
    connection.endheaders()
    response = connection.getresponse()
    assert "Content-Length" in assert_one_line_error(response.status, json.loads(response.read()))
    connection.close()


def test_unknown_paths_and_methods_answer_json(served):
    url, _ = served
    status, _, body = fetch(url + "nowhere")
    assert_one_line_error(status, json.loads(body), 404)
    status, _, body = fetch(url + "api/sample")
    assert_one_line_error(status, json.loads(body), 405)


def test_a_sampling_failure_is_a_one_line_500(served, monkeypatch, capsys):
    url, server = served

    def broken(request):
        raise RuntimeError("out of memory\non two lines")

    monkeypatch.setattr(server.service, "sample", broken)
    status, result = post_sample(url, {"label": 0})
    message = assert_one_line_error(status, result, 500)
    assert message == "sampling failed: RuntimeError: out of memory on two lines"
    try:  # a connection the browser dropped mid-answer: one line too, not socketserver's traceback
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        server.handle_error(None, ("127.0.0.1", 5000))
    logged = capsys.readouterr().err.strip().splitlines()
    assert logged == ["artok app: sampling failed: RuntimeError: out of memory on two lines",
                      "artok app: request from 127.0.0.1 failed: BrokenPipeError: [Errno 32] Broken pipe"]


def test_requests_sample_one_at_a_time(served, monkeypatch):
    """Concurrent clicks queue on the lock: the sampler never runs twice at once, each gets its image."""
    from artok.pipeline import Pipeline

    url, _ = served
    original, running, most = Pipeline.__call__, [0], [0]

    def counted(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.05)
        try:
            return original(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(Pipeline, "__call__", counted)
    results = [None] * 4

    def click(index):
        results[index] = post_sample(url, {"label": 0, "seed": 5, "count": 2})

    threads = [threading.Thread(target=click, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most[0] == 1
    assert all(status == 200 for status, _ in results) and len({result["png"] for _, result in results}) == 1


def test_options_follow_the_generator_kind():
    """A MAR generator has no top-k/top-p: /api/info leaves them out (the page hides them) and a
    request that sends them is refused by name."""
    from artok.app import RequestError

    folder = Path(__file__).parents[1] / "fixtures" / "old_layout" / "mar"
    if not (folder / "generator" / "config.json").is_file():
        pytest.skip(f"{folder} is not in this checkout")
    service = DemoService.load(folder / "generator", folder / "tokenizer")
    info = service.info()
    assert info["kind"] == "mar" and info["options"] == ["cfg_scale", "temperature"] and info["samplers"] == ["plain"]
    assert "top_k" not in info["defaults"] and "top_p" not in info["limits"]
    with pytest.raises(RequestError, match="top_k does not apply to mar sampling"):
        service.parse({"top_k": 4})
    result = service.sample(service.parse({"label": 1, "seed": 0, "count": 2}))
    assert decoded_png(result).size == (result["width"], result["height"])


# ---------------------------------------------------------------------------------------------
# The command


def test_command_options_and_port_check():
    args = parse_command(["app", "--generator", "g"])
    assert (args.host, args.port, args.device, args.tokenizer) == ("127.0.0.1", 7860, "cpu", None)
    for port in ("70000", "-1", "http"):
        with pytest.raises(SystemExit):
            parse_command(["app", "--generator", "g", "--port", port])


def test_a_bad_generator_folder_is_a_one_line_error(tmp_path, capsys):
    args = parse_command(["app", "--generator", str(tmp_path / "missing"), "--port", "0"])
    with pytest.raises(FileNotFoundError):
        app_command.run(args)
    if "artok.cli.app" in cli_main.PLUGIN_MODULES:
        assert cli_main.main(["app", "--generator", str(tmp_path / "missing"), "--port", "0"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("artok: error:") and "\n" not in error


def test_a_busy_port_is_a_one_line_error(model_folders, served):
    _, server = served
    args = parse_command(["app", "--generator", str(model_folders[0]), "--port", str(server.server_address[1])])
    with pytest.raises(ValueError, match="cannot listen on 127.0.0.1"):
        app_command.run(args)


RUN_COMMAND = """
import argparse, sys
from artok.cli import app
parser = argparse.ArgumentParser(prog="artok")
app.add_parser(parser.add_subparsers(dest="command"))
sys.exit(app.run(parser.parse_args(sys.argv[1:])))
"""


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_port_zero_prints_the_real_url_and_ctrl_c_exits_0(model_folders, inherited):
    """The real process: the printed URL answers, and SIGINT (Ctrl-C) stops it with status 0, also
    when it was started with SIGINT ignored (a background job of a non-interactive shell)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        [sys.executable, "-c", RUN_COMMAND, "app", "--generator", str(model_folders[0]), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        preexec_fn=ignore_sigint if inherited == "ignored" else None)
    try:
        line = process.stdout.readline()
        assert "open http://127.0.0.1:" in line and ":0/" not in line, line + process.stderr.read()
        url = line.split("open ", 1)[1].split()[0]
        assert fetch(url)[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=90)  # interpreter teardown is slow on a loaded machine
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# A real browser


@pytest.fixture
def browser():
    """Headless Debian chromium through its own chromedriver (Selenium Manager never runs: both
    paths are given, so nothing is downloaded); skipped where either or Selenium is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            pytest.skip(f"{path} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1180,760", "--hide-scrollbars"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as error:
        pytest.skip(f"chromium did not start: {' '.join(str(error).split())[:160]}")
    yield driver
    driver.quit()


def test_browser_generates_a_grid_and_shows_the_time(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, _ = served
    browser.get(url)
    WebDriverWait(browser, 15).until(lambda driver: driver.find_element(By.ID, "generate").is_enabled())
    classes = Select(browser.find_element(By.ID, "label"))
    assert [option.text for option in classes.options] == [f"{index}: {name}" for index, name in enumerate(CLASS_NAMES)]
    classes.select_by_visible_text("1: square")
    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("42")
    browser.find_element(By.ID, "generate").click()
    grid = browser.find_element(By.ID, "grid")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "const grid = arguments[0]; return !grid.hidden && grid.complete && grid.naturalWidth > 0;", grid))
    assert grid.is_displayed() and browser.execute_script("return arguments[0].naturalHeight;", grid) > 0
    timing = browser.find_element(By.ID, "timing").text
    assert "8 images" in timing and f"{8 * TOKENS_PER_IMAGE} tokens" in timing and "seed 42" in timing
    assert re.search(r": \d+\.\d\d s \(plain loop\)$", timing), timing
    assert "square" in browser.find_element(By.ID, "result-title").text
    assert not browser.find_element(By.ID, "error").is_displayed()

    # A refused request shows the server's one-line reason in the page.
    count = browser.find_element(By.ID, "count")
    count.clear()
    count.send_keys("1000")
    browser.find_element(By.ID, "generate").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 15).until(lambda driver: error.is_displayed())
    assert error.text == "count must lie in [1, 64], got 1000"

    path = tmp_path / "app.png"
    assert browser.save_screenshot(str(path))
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.var() > 0
