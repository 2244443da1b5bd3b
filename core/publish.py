"""A run on the Hugging Face Hub: checked, built and uploaded in one step.

    check_repo_name(name)                       'name' or 'owner/name' as the Hub accepts it, else one clear line
    resolve_token(token)                        the token typed in, else HF_TOKEN, else the one `hf auth login` saved
    push_run(run, repo, token, private)         the run exported (core/hf.py, with its card) into a model repository
    push_folder(folder, repo, token, ...)       any folder as one commit to a model or Space repository
    full_repo_id(name, token)                   'owner/name' for a bare name: the token's owner (which checks it)

Uploads go through huggingface_hub (create_repo, then upload_folder: one commit). The token lives only in memory
for the call: it is never written to a file, a log or a message (any message that would quote it is scrubbed).
HF_ENDPOINT points huggingface_hub at another Hub (the tests use a local recording server).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from core import runs
from core.errors import PublishError
from core.hf import export_hf

NAME_HINT = "like 'my-model' or 'your-name/my-model' (letters, digits, '-', '_' and '.')"
_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_repo_name(name) -> str:
    """The repository name stripped of spaces, or a PublishError that says what a name looks like."""
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise PublishError(f"Give the repository a name, {NAME_HINT}.")
    try:
        validate_repo_id(name)  # huggingface_hub's own rules (length, '--', '..', '.git', ...)
        valid = bool(_NAME.fullmatch(name)) and not name.endswith((".", "-"))
    except HFValidationError:
        valid = False
    if not valid:
        raise PublishError(f"{name[:100]!r} is not a valid Hugging Face repository name; use one {NAME_HINT}.")
    return name


def resolve_token(token: str | None = None) -> str:
    """The token typed in, else huggingface_hub's (HF_TOKEN, then the one `hf auth login` saved)."""
    token = (token or "").strip() or get_token()
    if not token:
        raise PublishError(
            "No Hugging Face token: type one (a 'write' token from huggingface.co/settings/tokens), set HF_TOKEN, "
            "or run `hf auth login` first."
        )
    if any(c.isspace() for c in token) or not token.isprintable():
        raise PublishError("That Hugging Face token has spaces or invisible characters in it; paste it again.")
    return token


def push_run(run_dir, repo: str, token: str | None = None, private: bool = False, which: str = "best") -> str:
    """Export the run (weights, tokenizer, card and loss curve) and upload it as the model repository `repo`
    (created if needed; 'name' alone goes under the token's owner). Returns the repository's URL."""
    name = check_repo_name(repo)
    runs.read_config(run_dir)  # a clear line for a folder that is not a run, before anything is sent
    token = resolve_token(token)
    repo_id = full_repo_id(name, token)
    with tempfile.TemporaryDirectory(prefix="newleaf-push-") as tmp:
        folder = export_hf(run_dir, Path(tmp) / "model", which=which, repo_id=repo_id)
        title = runs.title(run_dir)
        return push_folder(folder, repo_id, token, private=private, message=f"Upload {title} (trained with Newleaf)")


def push_folder(
    folder,
    repo_id: str,
    token: str,
    *,
    private: bool = False,
    repo_type: str = "model",
    space_sdk: str | None = None,
    message: str = "Upload from Newleaf",
) -> str:
    """Create the repository if needed and upload `folder` as one commit; returns the repository's URL."""
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, repo_type=repo_type, space_sdk=space_sdk, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=message)
    except Exception as e:  # every failure of the Hub or the network becomes one clear line
        raise _publish_error(e, repo_id, token) from None
    return str(url)


def full_repo_id(name: str, token: str) -> str:
    """'owner/name': a bare name goes under the token's owner (asking the Hub also checks the token)."""
    try:
        owner = HfApi(token=token).whoami(token=token)["name"]
    except Exception as e:  # a refused token, no network...
        raise _publish_error(e, name, token) from None
    return name if "/" in name else f"{owner}/{name}"


def _publish_error(e: Exception, repo_id: str, token: str) -> PublishError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE is set, so nothing may be sent to the Hugging Face Hub; unset it to upload."
    elif status == 401:
        why = "the Hugging Face Hub refused the token (wrong or expired); make a new one with 'write' access."
    elif status == 403:
        why = f"the token may not write to {repo_id}: it needs 'write' access, and the owner must be you or your org."
    elif status == 409:
        why = f"{repo_id} is taken, or is a repository of another kind."
    elif isinstance(e, HfHubHTTPError) and status is not None:
        why = f"the Hugging Face Hub answered HTTP {status} ({_short(e)})."
    elif isinstance(e, (HfHubHTTPError, OSError)) or "connect" in type(e).__name__.lower():
        why = f"the Hugging Face Hub could not be reached ({_short(e)}); check the network and try again."
    else:
        why = f"{type(e).__name__}: {_short(e)}."
    return PublishError(f"Could not upload to {repo_id}: {why} Nothing was published.".replace(token, "***"))


def _short(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"
