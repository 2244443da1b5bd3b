"""What counts as English left on a Chinese page (issue 15): words, not names or data."""

import re

# Words that stay English in Chinese on purpose: names (of models, formats, this app, a corpus) and units. Code,
# quoted text, file names, identifiers (n_embd=48) and numbers are data, not words: english_words drops them.
NAMES = {"Newleaf", "GPT", "BPE", "JSON", "CSV", "UTF", "Python", "Tiny", "Shakespeare", "cpu"}
UNITS = {"KB", "MB", "GB"}
ENGLISH_ON_PURPOSE = NAMES | UNITS


def english_words(text: str) -> list[str]:
    """The English words of `text` that are not on the short list above."""
    text = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", " ", text)
    text = re.sub(r"[\w.=/+-]*[_=./\d][\w.=/+-]*", " ", text)
    return [w for w in re.findall(r"[A-Za-z]{2,}", text) if w not in ENGLISH_ON_PURPOSE]
