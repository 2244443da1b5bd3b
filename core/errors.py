"""User-facing errors.

Everything a user can get wrong (a missing file, a binary corpus, an impossible model shape, a corrupt
checkpoint) raises a subclass of `NewleafError` whose message is one clear sentence meant to be shown as is:
the CLI prints it on one line, the app shows it to the user. Raised with a `Text` (core/messages.py), the error
also carries the message's key and fields (`.text`), so the app can say it in the page's language; `str(e)` is
always the English sentence.
"""

import socket
import urllib.error

from core.messages import Text


class NewleafError(Exception):
    """An error caused by the user's input or environment, with a message fit to show them."""

    def __init__(self, message: str | Text = ""):
        self.text = message if isinstance(message, Text) else None
        super().__init__(str(message))


class ConfigError(NewleafError):
    """An impossible or unknown model / training configuration."""


class CorpusError(NewleafError):
    """A corpus or dataset that cannot be used (empty, binary, not UTF-8, too short, too large...)."""


class TokenizerError(NewleafError):
    """A tokenizer that cannot be trained, loaded, or used on the given text."""


class CheckpointError(NewleafError):
    """A run directory or checkpoint that is missing, corrupt, or unsafe to load."""


class DownloadError(NewleafError):
    """A download that failed (usually: no network)."""


class PublishError(NewleafError):
    """An upload to the Hugging Face Hub that cannot be made: a bad repository name, no token, a refusal, no network."""


def short_reason(e: BaseException, limit: int = 300) -> str:
    """An unexpected exception as a phrase a message can quote: its type and text, cut to `limit` characters
    (a network error can carry a whole HTML page)."""
    reason = f"{type(e).__name__}: {e}"
    return reason if len(reason) <= limit else reason[:limit] + "..."


# what a failed download's exception looks like when the network is down or the host unreachable (requests and
# urllib3 name theirs this way; their classes are not imported here)
_NETWORK_ERRORS = (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)
_NETWORK_NAMES = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError", "NameResolutionError"}


def network_reason(e: BaseException) -> Text | str:
    """Why a download failed, for a message: "no network" (a Text) when the exception, or one it was raised
    from, is a connection, name-resolution or timeout error; otherwise short_reason(e)."""
    seen, cause = set(), e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _NETWORK_ERRORS) or any(c.__name__ in _NETWORK_NAMES for c in type(cause).__mro__):
            return Text("net.offline")
        cause = cause.__cause__ or cause.__context__
    return short_reason(e)
