"""How `python app.py` starts: a server the user's browser opens, or the app in a window of its own.

    python app.py               serves the app; on a desktop it opens the browser at it once it serves
    python app.py --no-browser  serves it only
    python app.py --window      the app in a native window (pywebview, the optional desktop extra:
                                `pip install -r requirements-desktop.txt`); closing the window stops the server

The browser opens only where a person can see it: not on a Hugging Face Space, not under CI, not without a
display. The port is $PORT, else Gradio's own $GRADIO_SERVER_PORT, else 7860; the host $NEWLEAF_HOST (default
127.0.0.1; 0.0.0.0 on a Space). A mistake is one `newleaf: error: ...` line and exit status 2, as in the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

DEFAULT_PORT = 7860
DESKTOP_EXTRA = "pip install -r requirements-desktop.txt"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        fail(f"{message} (see `python app.py --help`)")


def fail(message: str):
    print(f"newleaf: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = _Parser(prog="python app.py", description="Newleaf: train and play with a small GPT in your browser.")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--no-browser", action="store_true", help="serve the app without opening a browser")
    how.add_argument(
        "--window",
        action="store_true",
        help=f"open the app in a window of its own (needs the desktop extra: {DESKTOP_EXTRA})",
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}/"


def address(on_space: bool, env=None) -> Address:
    """Where to serve: $PORT, else $GRADIO_SERVER_PORT, else 7860; on a Space every interface."""
    env = os.environ if env is None else env
    name, raw = next(((k, env[k]) for k in ("PORT", "GRADIO_SERVER_PORT") if env.get(k, "").strip()), ("", ""))
    port = DEFAULT_PORT
    if name:
        try:
            port = int(raw.strip())
        except ValueError:
            port = -1
        if not 1 <= port <= 65535:
            fail(f"{name}={raw!r} is not a port number (1 to 65535).")
    host = "0.0.0.0" if on_space else (env.get("NEWLEAF_HOST") or "127.0.0.1")
    return Address(host, port)


def has_display(env=None, platform: str = sys.platform) -> bool:
    """Whether a person can see a window here: always on macOS and Windows; on Linux and the BSDs an X11 or
    Wayland display must be set."""
    env = os.environ if env is None else env
    if platform.startswith(("darwin", "win", "cygwin")):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def opens_browser(args: argparse.Namespace, on_space: bool, env=None, platform: str = sys.platform) -> bool:
    """Open the user's browser at the app: on a desktop only (not on a Space, not under CI, not headless),
    and not with --no-browser or --window."""
    env = os.environ if env is None else env
    ci = env.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not (args.no_browser or args.window or on_space or ci) and has_display(env, platform)


def check_window(on_space: bool, env=None, platform: str = sys.platform) -> None:
    """Before anything starts: --window needs a display and the desktop extra (pywebview)."""
    if on_space:
        fail("--window is for a desktop; a Space serves the app to browsers.")
    if not has_display(env, platform):
        fail("--window needs a display, and none is set here (DISPLAY / WAYLAND_DISPLAY); use `python app.py`.")
    try:
        import webview  # noqa: PLC0415, F401  the optional desktop extra, checked only when --window asks for it
    except ImportError:
        fail(f"--window needs the desktop extra, which is not installed: {DESKTOP_EXTRA}")


def run_window(url: str, title: str = "Newleaf", width: int = 1280, height: int = 860) -> None:
    """Show `url` in a native window until the user closes it. pywebview uses the platform's web view: WebKit on
    macOS, Edge WebView2 on Windows, and on Linux Qt WebEngine, which the desktop extra installs."""
    import webview  # noqa: PLC0415  the optional desktop extra (checked by check_window)

    webview.create_window(title, url, width=width, height=height, min_size=(800, 600))
    webview.start(gui="qt" if sys.platform.startswith("linux") else None)
