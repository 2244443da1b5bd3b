"""What the tabs share: settings, the job manager, the translator, and the session-wide states that carry
a choice from one tab to another. Plus `friendly`, which turns any error into a message for the user in the page's
language (a refusal leaves what is on the page as it was), `notify` for the page's other messages, and
`AppContext.handler`, which hands the context to a module-level handler."""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from dataclasses import dataclass

import gradio as gr
from gradio.context import LocalContext

from core.errors import NewleafError, short_reason
from playground.i18n import STRINGS, Translator, say, t
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
    time_limit: gr.State = None  # the Train tab's time limit in seconds (0: none), for the tabs drawn before it
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


def notify(message: str, level: str = "info") -> None:
    """A message beside the page ("info" or "warning"), already in the page's language. Gradio titles it by its
    kind; ui.toast_titles_css says that title in the page's language."""
    (gr.Warning if level == "warning" else gr.Info)(message)


def _from_the_page() -> bool:
    """Whether the running handler serves an event of the app's own page through the queue. Only then can a
    message be shown beside the outputs while they stay as they are (gr.Warning needs the queue's event); an API
    client (gradio_client, which says x-gradio-user: api) learns of a refusal from an error instead."""
    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    return LocalContext.event_id.get(None) is not None and headers.get("x-gradio-user") == "app"


def _lang_of(signature: inspect.Signature, args, kwargs) -> str:
    """The page's language, from the handler's `lang` argument (English when it has none)."""
    try:
        lang = signature.bind_partial(*args, **kwargs).arguments.get("lang")
    except TypeError:
        return "en"
    return lang if isinstance(lang, str) and lang in STRINGS else "en"


def _failure(e: Exception, lang: str):
    """What a handler's exception becomes. A refusal (a NewleafError: the user's input or environment) is a
    message in the page's language: on the page a warning beside the outputs, which all stay as they were
    (gr.skip()); for an API caller a gr.Error. Anything else is a bug: logged, and reported as a gr.Error."""
    if isinstance(e, NewleafError):
        message = say(e, lang)
        if _from_the_page():
            notify(message, "warning")
            return gr.skip()
        raise gr.Error(message, print_exception=False) from None
    log.error("unexpected error\n%s", traceback.format_exc())
    message = t("app.unexpected", lang, reason=short_reason(e))
    raise gr.Error(message, print_exception=False) from None


def friendly(fn):
    """Wrap an event handler so that no failure reaches the user as a traceback or Gradio's bare "Error": a
    refusal (NewleafError) becomes a message naming the problem, in the page's language (the handler's `lang`
    argument), and leaves the event's outputs untouched; see _failure. Works for plain functions and generators
    (streaming handlers); a gr.Error the handler raises itself passes through."""
    signature = inspect.signature(fn)
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                yield _failure(e, _lang_of(signature, args, kwargs))

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            return _failure(e, _lang_of(signature, args, kwargs))

    return wrapper
