"""Uploaded files, checked again on the server (a client can bypass the browser's limits): each file within the
upload limit (a corpus in the Data tab, fine-tuning data, a run's zip in the Runs tab), and an uploaded run's model
within what a model trained here may be."""

from __future__ import annotations

import os

from core.errors import ConfigError, CorpusError
from core.model import inference_memory
from core.units import format_bytes
from playground.i18n import t
from playground.model_choices import MAX_SAMPLES, memory_limit
from playground.settings import Settings

MB = 1024 * 1024


def check_upload_sizes(paths, settings: Settings, lang: str = "en", too_big: str = "data.too_big") -> None:
    """Each uploaded file within the upload limit. `too_big`: the i18n key of the refusal (given the file's
    `name` and the limit in `mb`)."""
    limit = int(settings.max_upload_mb * MB)
    for p in paths:
        if os.path.getsize(p) > limit:
            raise CorpusError(t(too_big, lang, name=os.path.basename(p), mb=f"{settings.max_upload_mb:g}"))


def check_upload_fits(cfg, settings: Settings, lang: str = "en") -> None:
    """An uploaded run is used here like one trained here: the same context limit, and its weights plus the
    KV cache of the most samples the Generate tab asks for must fit in the memory a job may use."""
    if cfg.block_size > settings.max_context:
        raise ConfigError(t("runs.upload_context", lang, block=f"{cfg.block_size:,}", max=f"{settings.max_context:,}"))
    need, limit = inference_memory(cfg, MAX_SAMPLES), memory_limit(settings)
    if need > limit:
        raise ConfigError(t("runs.upload_memory", lang, need=format_bytes(need), limit=format_bytes(limit)))
