"""What the app tests share: a free port, and the context a tab is built with outside the whole app (the tabs under
test alone, on their own Blocks)."""

from __future__ import annotations

import socket

import gradio as gr

from playground.context import AppContext
from playground.i18n import Translator
from playground.jobs import Jobs
from playground.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tab_context(jobs: Jobs) -> AppContext:
    """The shared state the app gives its tabs, with settings from the environment (build inside gr.Blocks)."""
    return AppContext(
        settings=Settings.from_env(),
        jobs=jobs,
        tr=Translator(),
        owner=gr.BrowserState(None),
        lang=gr.BrowserState("en"),
        current_run=gr.BrowserState(None),
        corpus=gr.State(None),
        selected_run=gr.State(None),
        runs_changed=gr.State(0),
    )
