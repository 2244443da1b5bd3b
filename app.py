"""Newleaf app: `python app.py` serves it on http://127.0.0.1:7860 (on a Hugging Face Space the same file
runs). Everything it does goes through core/; the UI is built in playground/."""

import os
import sys

from core.errors import NewleafError
from playground.settings import Settings
from playground.ui import build_app, launch_kwargs, queue_kwargs

try:
    settings = Settings.from_env()
    demo, ctx = build_app(settings)
except NewleafError as e:  # e.g. a runs directory that cannot be created: one line, not a traceback
    print(f"newleaf: error: {e}", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
    on_space = settings.on_space
    demo.queue(**queue_kwargs(settings))
    demo.launch(
        server_name="0.0.0.0" if on_space else os.environ.get("NEWLEAF_HOST", "127.0.0.1"),
        server_port=int(os.environ.get("PORT", 7860)),
        **launch_kwargs(settings),
    )
