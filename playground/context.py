"""What the tabs share: settings, the job manager, the translator, and the session-wide states that carry
a choice from one tab to another. Plus `friendly`, which turns any error into a message for the user, and
`AppContext.handler`, which hands the context to a module-level handler."""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from dataclasses import dataclass

import gradio as gr

from core.errors import NewleafError
from playground.i18n import Translator
from playground.jobs import Jobs
from playground.settings import Settings

log = logging.getLogger("newleaf.app")


@dataclass
class AppContext:
    settings: Settings
    jobs: Jobs
    tr: Translator
    owner: gr.BrowserState = None  # this browser's secret owner token (see playground/jobs.py)
    lang: gr.BrowserState = None  # "en" | "zh"
    current_run: gr.BrowserState = None  # the run the Train tab follows; survives a page refresh
    corpus: gr.State = None  # the corpus and tokenizer chosen in the Data tab (a dict), or None
    selected_run: gr.State = None  # the run loaded into Generate / Attention
    runs_changed: gr.State = None  # bumped whenever a run is created or deleted, to refresh lists

    def handler(self, fn, *args):
        """`fn(ctx, *args, *inputs)` as an event handler `(*inputs)`: the tabs' handlers are module-level functions
        that take the context first. Unlike functools.partial, the result is a plain function with fn's name,
        its remaining parameters and their type hints, which Gradio reads to pass event data (gr.SelectData,
        gr.LikeData) and to stream from a generator."""
        return _bound(fn, (self, *args))


def _bound(fn, args: tuple):
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def bound(*more, **kwargs):
            yield from fn(*args, *more, **kwargs)
    else:

        @functools.wraps(fn)
        def bound(*more, **kwargs):
            return fn(*args, *more, **kwargs)

    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[len(args) :])
    return bound


def _message(e: Exception) -> str:
    if isinstance(e, NewleafError):
        return str(e)
    log.error("unexpected error\n%s", traceback.format_exc())
    return f"Something went wrong ({type(e).__name__}: {e}). Nothing saved was lost; please try again."


def friendly(fn):
    """Wrap an event handler so every failure reaches the user as a specific gr.Error, never a traceback or
    Gradio's bare 'Error'. Works for plain functions and generators (streaming handlers)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise gr.Error(_message(e), print_exception=False) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise gr.Error(_message(e), print_exception=False) from None

    return wrapper
