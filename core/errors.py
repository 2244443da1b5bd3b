"""User-facing errors.

Everything a user can get wrong (a missing file, a binary corpus, an impossible model shape, a corrupt
checkpoint) raises a subclass of `NewleafError` whose message is one clear sentence meant to be shown as is:
the CLI prints it on one line, the app shows it in a `gr.Error`.
"""


class NewleafError(Exception):
    """An error caused by the user's input or environment, with a message fit to show them."""


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
