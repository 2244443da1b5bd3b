"""Newleaf core engine: a small causal GPT, its tokenizers, corpora, trainer and sampler.

Never imports gradio: everything here is shared by the CLI (`python -m core`), the app and Python callers.
"""
