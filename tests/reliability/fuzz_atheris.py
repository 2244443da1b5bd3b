"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers that read what users upload: corpus files,
fine-tuning data, tokenizer files and run JSON. Run by test_atheris.py for a bounded number of inputs; run it
by hand for a longer hunt:

    .venv/bin/python tests/reliability/fuzz_atheris.py -runs=200000 -artifact_prefix=/tmp/

Any exception other than a NewleafError (whose message the app shows) is a crash: libFuzzer saves the input
and the process exits non-zero.
"""

import os
import sys
import tempfile
from pathlib import Path

import atheris

# The heavy libraries are imported first, uninstrumented: only Newleaf's own code is traced for coverage.
import numpy  # noqa: F401
import pandas  # noqa: F401
import tiktoken  # noqa: F401
import torch  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
with atheris.instrument_imports():
    from core import files
    from core.data import read_text_file
    from core.errors import NewleafError
    from core.sft_data import load_finetune_data
    from core.tokenizer import load_tokenizer

FOLDER = Path(tempfile.mkdtemp(prefix="newleaf-atheris-"))
SUFFIXES = [".txt", ".jsonl", ".csv", ".json", ".md"]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 3)
    suffix = SUFFIXES[fdp.ConsumeIntInRange(0, len(SUFFIXES) - 1)]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if target == 0:
            path = FOLDER / f"corpus{suffix}"
            path.write_bytes(body)
            read_text_file(path, max_bytes=1_000_000)
        elif target == 1:
            path = FOLDER / f"data{suffix}"
            path.write_bytes(body)
            load_finetune_data(path, max_bytes=1_000_000)
        elif target == 2:
            (FOLDER / "tokenizer.json").write_bytes(body)
            tok = load_tokenizer(FOLDER)
            tok.decode(tok.encode("Hello"))
        else:
            (FOLDER / "x.json").write_bytes(body)
            files.read_json(FOLDER / "x.json")
    except NewleafError as e:
        if not str(e).strip():
            raise AssertionError("a NewleafError without a message") from e


if __name__ == "__main__":
    os.environ.setdefault("NEWLEAF_OFFLINE", "1")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
