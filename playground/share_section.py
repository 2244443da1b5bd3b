"""The Runs tab's Share section: the picked run published on the Hugging Face Hub, as a model that transformers
loads (core/publish.py: the export, its card, one commit) or as a Space of its own (core/space.py).

The token is typed into a password box and used for that one upload: it is not kept in the page's state or the
browser's storage, and never written to a file or a log. Where nobody else can use the app (a desktop), an empty box
falls back to huggingface_hub's own token (HF_TOKEN, or `hf auth login`); on a shared server (a Space) it never
does, so no visitor publishes with the server's token. Public endpoints, for gradio_client and the tests:

    publish_model(owner, run_id, which, repo, token, private, lang)   -> a message with the model's URL
    publish_space(owner, run_id, which, repo, token, private, lang)   -> a message with the Space's URL
"""

from __future__ import annotations

import gradio as gr

from core import runs
from core.errors import NewleafError, PublishError
from core.publish import check_repo_name, push_run, resolve_token
from core.space import push_space
from playground.context import AppContext, friendly
from playground.i18n import t


def checked_repo(repo, lang: str) -> str:
    if not isinstance(repo, str) or not repo.strip():
        raise NewleafError(t("share.no_repo", lang))
    try:
        return check_repo_name(repo)
    except PublishError:
        raise NewleafError(t("share.bad_repo", lang, name=repr(repo.strip()[:100]))) from None


def checked_token(typed, on_space: bool, lang: str) -> str:
    """The typed token; else, off a shared server only, huggingface_hub's own (HF_TOKEN, `hf auth login`)."""
    typed = typed.strip() if isinstance(typed, str) else ""
    if not typed and on_space:
        raise NewleafError(t("share.token_needed", lang))
    try:
        return resolve_token(typed or None)
    except PublishError:
        raise NewleafError(t("share.bad_token" if typed else "share.no_token", lang)) from None


def _checked(ctx: AppContext, owner, run_id, repo, token, lang):
    if not run_id or not isinstance(run_id, str):
        raise NewleafError(t("runs.no_pick", lang))
    path = ctx.jobs.check_read(owner, run_id)
    if runs.checkpoint_dir(path, "last") is None:
        raise NewleafError(t("runs.no_checkpoint", lang, title=runs.title(path)))
    return path, checked_repo(repo, lang), checked_token(token, ctx.settings.on_space, lang)


@friendly
def publish_model(ctx: AppContext, owner, run_id, which, repo, token, private, lang):
    path, repo, token = _checked(ctx, owner, run_id, repo, token, lang)
    url = push_run(path, repo, token=token, private=bool(private), which=which or "best")
    return t("share.published_model", lang, title=runs.title(path), url=url)


@friendly
def publish_space(ctx: AppContext, owner, run_id, which, repo, token, private, lang):
    path, repo, token = _checked(ctx, owner, run_id, repo, token, lang)
    url = push_space(path, repo, token=token, private=bool(private), which=which or "best")
    return t("share.published_space", lang, title=runs.title(path), url=url)


def create_section(ctx: AppContext, picker: gr.Dropdown, which: gr.Radio) -> None:
    """The Share accordion, publishing the run picked in `picker` at the checkpoint `which`."""
    tr = ctx.tr
    with tr(gr.Accordion, label="share.title", open=False):
        tr(gr.Markdown, value="share.explainer")
        with gr.Row():
            repo = tr(gr.Textbox, label="share.repo", info="share.repo_info", scale=3)
            info = "share.token_info_space" if ctx.settings.on_space else "share.token_info"
            token = tr(gr.Textbox, label="share.token", info=info, type="password", scale=3)
            private = tr(gr.Checkbox, label="share.private", value=False, scale=1)
        with gr.Row():
            model = tr(gr.Button, value="share.model", variant="primary")
            space = tr(gr.Button, value="share.space")
        message = gr.Markdown()
    inputs = [ctx.owner, picker, which, repo, token, private, ctx.lang]
    model.click(ctx.handler(publish_model), inputs, [message], api_name="publish_model")
    space.click(ctx.handler(publish_space), inputs, [message], api_name="publish_space")
