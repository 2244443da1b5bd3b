"""`python app.py` on a desktop (playground/desktop.py): the browser opens at the app once it serves, but not on a
Space, under CI or without a display; the port comes from PORT or GRADIO_SERVER_PORT; `--window` shows the app in
a native window (pywebview over Qt WebEngine) on a virtual screen (Xvfb), where the page is seen rendered in a
screenshot, and closing the window stops the server. Mistakes are one line and exit status 2."""

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from argparse import Namespace

import pytest

from playground import desktop
from tests.apps import free_port
from tests.conftest import REPO
from tests.x11 import Xvfb

GREEN = (34, 197, 94)  # the theme's primary colour (buttons, the chosen tab): seen only once the page has rendered


def app_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "GRADIO_SERVER_PORT", "CI", "SPACE_ID", "BROWSER")}
    env.update(NEWLEAF_RUNS=str(tmp_path / "runs"), PYTHONIOENCODING="utf-8", **extra)
    return env


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------------------------------------
# The rules


def args(**kw) -> Namespace:
    return Namespace(**{"no_browser": False, "window": False, **kw})


@pytest.mark.parametrize(
    "kw, on_space, env, platform, opens",
    [
        ({}, False, {"DISPLAY": ":0"}, "linux", True),
        ({}, False, {"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({}, False, {}, "darwin", True),
        ({}, False, {}, "win32", True),
        ({}, False, {}, "linux", False),  # a server without a screen
        ({}, True, {"DISPLAY": ":0"}, "linux", False),  # a Space
        ({}, False, {"DISPLAY": ":0", "CI": "true"}, "linux", False),
        ({}, False, {"DISPLAY": ":0", "CI": "0"}, "linux", True),
        ({"no_browser": True}, False, {"DISPLAY": ":0"}, "linux", False),
        ({"window": True}, False, {"DISPLAY": ":0"}, "linux", False),  # the window shows it instead
    ],
)
def test_when_the_browser_opens(kw, on_space, env, platform, opens):
    assert desktop.opens_browser(args(**kw), on_space, env, platform) is opens


def test_the_port_comes_from_port_then_gradio_server_port():
    assert desktop.address(False, {}).port == 7860
    assert desktop.address(False, {"GRADIO_SERVER_PORT": "7000"}).port == 7000
    assert desktop.address(False, {"PORT": "8000", "GRADIO_SERVER_PORT": "7000"}).port == 8000
    assert desktop.address(True, {"PORT": "8000"}) == desktop.Address("0.0.0.0", 8000)
    assert desktop.address(False, {"NEWLEAF_HOST": "0.0.0.0"}).url == "http://127.0.0.1:7860/"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: desktop.parse_args(["--frobnicate"]), "unrecognized arguments: --frobnicate"),
        (lambda: desktop.parse_args(["--window", "--no-browser"]), "not allowed with argument"),
        (lambda: desktop.address(False, {"GRADIO_SERVER_PORT": "70000"}), "GRADIO_SERVER_PORT='70000' is not a port"),
        (lambda: desktop.address(False, {"PORT": " "}) and desktop.address(False, {"PORT": "8o"}), "PORT='8o' is not"),
        (lambda: desktop.check_window(False, {}, "linux"), "--window needs a display"),
        (lambda: desktop.check_window(True, {"DISPLAY": ":0"}, "linux"), "--window is for a desktop"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(capsys, call, message):
    with pytest.raises(SystemExit) as stopped:
        call()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("newleaf: error: ") and message in err, err
    assert err.count("\n") == 1


def test_app_py_answers_a_mistake_before_building_the_app(tmp_path):
    r = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=app_env(tmp_path, PORT="http"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr == "newleaf: error: PORT='http' is not a port number (1 to 65535).\n"
    assert r.stdout == "" and not (tmp_path / "runs").exists()  # nothing was built


def test_window_without_the_desktop_extra_says_how_to_install_it(tmp_path):
    fake = tmp_path / "no-extra"  # a `webview` that cannot be imported, as where the extra is not installed
    fake.mkdir()
    (fake / "webview.py").write_text("raise ImportError('No module named webview')\n")
    env = app_env(tmp_path, DISPLAY=":0", PYTHONPATH=str(fake))
    r = subprocess.run(
        [sys.executable, "app.py", "--window"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "pip install -r requirements-desktop.txt" in r.stderr and r.stderr.count("\n") == 1


# ----------------------------------------------------------------------------------------------------------
# The browser, for real: Python's webbrowser runs $BROWSER, here a program that records the page it was given


def test_app_opens_the_browser_once_it_serves(tmp_path):
    record = tmp_path / "opened.json"
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import json, sys, urllib.request\n"
        "url = sys.argv[1]\n"
        "with urllib.request.urlopen(url, timeout=10) as r:\n"
        "    page = r.read().decode('utf-8', 'replace')\n"
        "seen = {'url': url, 'status': r.status, 'gradio': 'gradio' in page.lower()}\n"
        f"json.dump(seen, open({str(record)!r}, 'w'))\n"
    )
    port = free_port()
    env = app_env(tmp_path, DISPLAY=":0", GRADIO_SERVER_PORT=str(port), BROWSER=f"{sys.executable} {browser} %s")
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while not record.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert record.exists(), proc.stderr.read() if proc.poll() is not None else "no browser was opened"
        opened = json.loads(record.read_text())
        # the browser got the app's address, and the app was already serving it
        assert opened == {"url": f"http://127.0.0.1:{port}/", "status": 200, "gradio": True}
    finally:
        stop(proc)


# ----------------------------------------------------------------------------------------------------------
# The window, for real, on a virtual screen


def _window_extra_missing() -> str | None:
    if not Xvfb.available():
        return "Xvfb is not installed (Debian's xvfb; .ci/run installs it)"
    for module in ("webview", "PyQt6.QtWebEngineWidgets"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install -r requirements-desktop.txt)"
        except ModuleNotFoundError:
            return f"{module} is not installed (pip install -r requirements-desktop.txt)"
    return None


def test_window_shows_the_rendered_app_and_closing_it_stops_the_server(tmp_path):
    missing = _window_extra_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the window test, but {missing}")
        pytest.skip(missing)
    port = free_port()
    with Xvfb() as screen:
        # QtWebEngine (Chromium) refuses to run as root with its sandbox on, and CI runs as root
        env = app_env(tmp_path, DISPLAY=screen.display, GRADIO_SERVER_PORT=str(port), QTWEBENGINE_DISABLE_SANDBOX="1")
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--window"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            window = screen.find_window("Newleaf", timeout=180)
            assert window is not None, "no window titled Newleaf appeared"
            assert serves(f"http://127.0.0.1:{port}/")
            # the page inside renders: wait until the screenshot shows the theme's green (tabs, buttons)
            deadline, shot = time.monotonic() + 120, None
            while time.monotonic() < deadline:
                shot = screen.screenshot().convert("RGB")
                green = sum(n for n, c in shot.getcolors(1 << 20) if all(abs(a - b) <= 12 for a, b in zip(c, GREEN)))
                if green > 2000:
                    break
                time.sleep(1)
            shot.save(tmp_path / "window.png")
            assert green > 2000, f"the page did not render in the window (screenshot: {tmp_path / 'window.png'})"
            assert len(shot.getcolors(1 << 20)) > 200  # text, borders and fields, not a blank or one-colour window
            screen.close_window(window)  # as the close button does
            assert proc.wait(60) == 0
            assert not serves(f"http://127.0.0.1:{port}/")
        finally:
            stop(proc)
