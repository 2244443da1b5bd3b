"""Newleaf app: `python app.py` serves it on http://127.0.0.1:7860 and, on a desktop, opens the browser at it;
`python app.py --window` opens it in a window of its own (playground/desktop.py). On a Hugging Face Space the
same file runs. Everything it does goes through core/; the UI is built in playground/."""

import sys

from core.errors import NewleafError
from playground import desktop
from playground.settings import Settings
from playground.ui import build_app, launch_kwargs, queue_kwargs

# the command line first: --help and a mistake answer at once, before the app is built
args = desktop.parse_args() if __name__ == "__main__" else None
try:
    settings = Settings.from_env()
    if args is not None:
        where = desktop.address(settings.on_space)
        if args.window:
            desktop.check_window(settings.on_space)
    demo, ctx = build_app(settings)
except NewleafError as e:  # e.g. a runs directory that cannot be created: one line, not a traceback
    print(f"newleaf: error: {e}", file=sys.stderr)
    sys.exit(2)

if args is not None:
    demo.queue(**queue_kwargs(settings))
    demo.launch(
        server_name=where.host,
        server_port=where.port,
        inbrowser=desktop.opens_browser(args, settings.on_space),  # once it serves
        prevent_thread_lock=args.window,
        **launch_kwargs(settings),
    )
    if args.window:
        try:
            desktop.run_window(where.url)
        finally:  # the window is closed: so is the app
            demo.close()
            ctx.jobs.shutdown()
