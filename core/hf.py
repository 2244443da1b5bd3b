"""Hugging Face interop: GPT-2 weights in, Newleaf models out.

    load_hf_gpt2(name_or_path)            a Hub id (gpt2, distilgpt2, ...) or a local HF folder -> (GPT, tokenizer)
    import_hf_as_run(name_or_path, run)   the same, written as a Newleaf run (sample it, fine-tune it later)
    export_hf(run, out)                   a run's checkpoint as a folder `transformers` loads:
                                          AutoModelForCausalLM / AutoTokenizer.from_pretrained(out)

The model uses GPT-2's parameter names, so both directions are a name mapping plus one transpose: HF's GPT-2
stores its four projection matrices as `Conv1D` weights, shaped (in, out), where nn.Linear has (out, in).
Weights are read and written only as safetensors: a pickle-based `pytorch_model.bin` can run arbitrary code
when loaded, so it is refused. `transformers` itself is not needed here; the tokenizer files are built with
the `tokenizers` library.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import save_file
from tiktoken.load import read_file_cached
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from core import files, runs
from core.cache import is_offline
from core.card import write_card
from core.data import open_tokens
from core.errors import CheckpointError, ConfigError, DownloadError, NewleafError, TokenizerError, network_reason
from core.files import atomic_folder, check_free_folder, read_json
from core.messages import Text
from core.model import GPT, GPTConfig
from core.tokenizer import GPT2Tokenizer
from core.train_config import TrainConfig

GPT2_VOCAB_SIZE = 50257
# Projections that HF's GPT-2 keeps as Conv1D, (in, out): transposed to and from nn.Linear's (out, in).
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers some GPT-2 checkpoints carry: the causal mask and its fill value, rebuilt by every implementation.
BUFFERS = (".attn.bias", ".attn.masked_bias")
# GELU's tanh approximation under its three HF names; Newleaf's MLP computes exactly this one.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")

# ----------------------------------------------------------------------------------------------------------
# Name mapping


def hf_to_newleaf(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF GPT-2 tensors (with or without the `transformer.` prefix) -> Newleaf names, nn.Linear layout, fp32.
    The tied `lm_head.weight`, when present, is dropped: the caller checks it equals wte first."""
    out = {}
    for name, t in tensors.items():
        if name == "lm_head.weight" or name.endswith(BUFFERS):
            continue
        key = name if name.startswith("transformer.") else f"transformer.{name}"
        t = t.to(torch.float32)
        if key.endswith(CONV1D) and t.ndim != 2:
            raise CheckpointError(f"{name} has shape {tuple(t.shape)}, but a GPT-2 projection weight is a matrix.")
        out[key] = t.t().contiguous() if key.endswith(CONV1D) else t.contiguous()
    return out


def newleaf_to_hf(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Newleaf tensors (runs.model_tensors: no lm_head) -> HF GPT2LMHeadModel names and Conv1D layout."""
    return {k: (v.t() if k.endswith(CONV1D) else v).contiguous() for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------------------
# Import: a Hub id or an HF folder -> a Newleaf GPT


def resolve_hf(name_or_path) -> tuple[Path, str]:
    """The local folder holding config.json + safetensors, and a name for messages. A Hub id is downloaded
    (config and safetensors only) into Hugging Face's cache, or read from it when offline."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return path, name
    if path.exists():
        raise CheckpointError(Text("hf.is_file", name=name))
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise CheckpointError(Text("hf.no_folder", name=name))
    return _download(name), name


def _download(repo_id: str) -> Path:
    offline = is_offline()
    try:
        folder = snapshot_download(
            repo_id,
            allow_patterns=["config.json", "*.safetensors", "model.safetensors.index.json"],
            local_files_only=offline,
        )
    except HFValidationError:
        raise CheckpointError(Text("hf.bad_id", repo=repo_id)) from None
    except GatedRepoError:
        raise DownloadError(Text("hf.gated", repo=repo_id)) from None
    except RepositoryNotFoundError:
        raise DownloadError(Text("hf.not_found", repo=repo_id)) from None
    except LocalEntryNotFoundError as e:
        why = Text("hf.offline_env") if offline else Text("hf.no_download")
        raise DownloadError(Text("hf.not_cached", repo=repo_id, why=why)) from e
    except Exception as e:  # connection refused, timeout, DNS, HTTP 5xx...
        raise DownloadError(Text("hf.download_failed", repo=repo_id, reason=network_reason(e))) from e
    return Path(folder)


def read_hf_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """All tensors of an HF folder: model.safetensors, or the shards its index names. Never pickle."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return runs.load_tensors(single)
    if index.is_file():
        doc = read_json(index)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(Text("hf.no_weight_map", path=str(index)))
        odd = [v for v in weight_map.values() if not isinstance(v, str)]
        if odd:
            raise CheckpointError(Text("hf.unsafe_shard", path=str(index), shard=odd[0]))
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise CheckpointError(Text("hf.unsafe_shard", path=str(index), shard=shard))
            tensors.update(runs.load_tensors(folder / shard))
        return tensors
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in runs.PICKLE_SUFFIXES)
    if pickled:
        raise CheckpointError(Text("hf.only_pickle", name=name, pickled=pickled[0]))
    raise CheckpointError(Text("hf.no_safetensors", name=name))


def gpt_config_from_hf(hf: dict, name: str) -> GPTConfig:
    """The GPTConfig for an HF GPT-2 config.json, or a CheckpointError naming what Newleaf can't represent."""

    def refuse(why: Text):
        raise CheckpointError(Text("hf.refuse", name=name, why=why))

    if not isinstance(hf, dict):
        refuse(Text("hf.why.not_object"))
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        refuse(Text("hf.why.model_type", model_type=model_type))
    act = hf.get("activation_function", "gelu_new")
    if act not in (*TANH_GELUS, "gelu"):
        refuse(Text("hf.why.activation", act=act))
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or not math.isclose(float(min(eps, 1.0)), 1e-5, rel_tol=1e-6):
        refuse(Text("hf.why.eps", eps=eps))
    if hf.get("scale_attn_by_inverse_layer_idx"):
        refuse(Text("hf.why.inverse_layer"))
    if hf.get("scale_attn_weights", True) is False:
        refuse(Text("hf.why.unscaled"))
    if hf.get("add_cross_attention"):
        refuse(Text("hf.why.cross_attention"))
    n_embd = hf.get("n_embd")
    n_inner = hf.get("n_inner")
    width = n_embd if isinstance(n_embd, int) else 0
    if n_inner is not None and n_inner != 4 * width:
        refuse(Text("hf.why.n_inner", n_inner=n_inner, width=4 * width))
    # reorder_and_upcast_attn only changes the order of fp16 operations: in fp32 it computes the same thing.
    try:
        pdrop = float(hf.get("resid_pdrop", 0.0) or 0.0)
        return GPTConfig(
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=n_embd,
            block_size=hf.get("n_positions") or hf["n_ctx"],
            vocab_size=hf["vocab_size"],
            dropout=pdrop,
            bias=True,
            activation="gelu" if act == "gelu" else "gelu_tanh",
        )
    except KeyError as e:
        raise CheckpointError(Text("hf.lacks", name=name, key=e.args[0])) from None
    except ConfigError as e:
        raise CheckpointError(Text("hf.impossible", name=name, reason=e.text or str(e))) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(Text("hf.impossible", name=name, reason=str(e))) from None


# The Hub models the app offers, by shape: a parameter preview before anything is downloaded.
KNOWN_HUB_SHAPES = {
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768, block_size=1024, vocab_size=GPT2_VOCAB_SIZE),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=GPT2_VOCAB_SIZE),
}


def hf_shape(name: str, folder: Path | None = None) -> GPTConfig | None:
    """The shape of a GPT-2-family model without reading its weights (or downloading anything): a local
    folder's config.json, else a Hub model's config.json if Hugging Face's cache has it, else the known shape
    of a model the app offers. None when it cannot be known yet."""
    config_file = folder / "config.json" if folder else None
    if config_file is None:
        try:
            cached = try_to_load_from_cache(name, "config.json")
        except (HFValidationError, OSError, ValueError):
            cached = None
        config_file = Path(cached) if isinstance(cached, str) else None
    if config_file is not None and config_file.is_file():
        return gpt_config_from_hf(read_json(config_file), name)
    return GPTConfig(**KNOWN_HUB_SHAPES[name]) if name in KNOWN_HUB_SHAPES else None


def load_hf_model(name_or_path) -> tuple[GPT, dict]:
    """A GPT-2-family model from the Hub or a local HF folder, of any vocabulary, and its HF config dict."""
    folder, name = resolve_hf(name_or_path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(Text("hf.no_config", name=name))
    hf = read_json(folder / "config.json")
    cfg = gpt_config_from_hf(hf, name)
    raw = read_hf_weights(folder, name)
    tensors = hf_to_newleaf(raw)
    head, wte = raw.get("lm_head.weight"), tensors.get("transformer.wte.weight")
    if head is not None and wte is not None and not torch.equal(head.to(torch.float32), wte):
        raise CheckpointError(Text("hf.untied", name=name))
    runs.check_size(cfg, tensors, name)  # before building a model of whatever size config.json claims
    model = GPT(cfg)
    runs.load_model_weights(model, tensors, name)
    return model.eval(), hf


def load_hf_gpt2(name_or_path) -> tuple[GPT, GPT2Tokenizer]:
    """GPT-2-family weights (gpt2, distilgpt2, gpt2-medium, ... or a local HF folder) as a Newleaf GPT, with
    GPT-2's tokenizer. Models with another vocabulary are refused: their tokenizer would not be GPT-2's."""
    model, _ = load_hf_model(name_or_path)
    if model.config.vocab_size != GPT2_VOCAB_SIZE:
        raise CheckpointError(Text("hf.vocab", name=str(name_or_path), n=model.config.vocab_size, gpt2=GPT2_VOCAB_SIZE))
    return model, GPT2Tokenizer()


def import_hf_as_run(name_or_path, run_dir) -> Path:
    """Write a run directory whose checkpoint (step 0, `best` and `last`) holds GPT-2-family weights, so
    `python -m core sample --run RUN_DIR` works at once. It has no training data: config["source"] says where
    the weights came from, and config["data"] is empty."""
    run_dir = Path(run_dir)
    check_free_folder(run_dir, "a run")
    model, tokenizer = load_hf_gpt2(name_or_path)
    source = {"hf": str(name_or_path)}

    def write(tmp: Path):
        tokenizer.save(tmp)
        config = {
            "model": model.config.to_dict(),
            "train": asdict(TrainConfig()),
            "tokenizer": tokenizer.summary(),
            "data": {
                "name": f"none (weights imported from Hugging Face: {name_or_path})",
                "val_fraction": 0.0,
                "train_tokens": 0,
                "val_tokens": 0,
                "train_chars": 0,
                "val_chars": 0,
                "val_bytes": 0,
            },
            "source": source,
            "created": time.time(),
        }
        files.atomic_write_json(tmp / runs.CONFIG, config)
        runs.save_checkpoint(tmp, model, {}, {"step": 0, "elapsed_s": 0.0, "source": source}, best=True)
        runs.write_status(tmp, "completed", Text("status.imported", name=str(name_or_path)), step=0)

    atomic_folder(run_dir, write, "a run")
    return run_dir


# ----------------------------------------------------------------------------------------------------------
# Export: a run's checkpoint -> a folder transformers loads


def export_hf(run_dir, out_dir, which: str = "best", repo_id: str | None = None) -> Path:
    """Write `out_dir` with config.json, model.safetensors, generation_config.json, the tokenizer files and a
    model card (README.md and its loss curve, core/card.py; `repo_id` is the name its examples load), for
    transformers' AutoModelForCausalLM / AutoTokenizer. The folder appears complete or not at all; an existing
    non-empty folder is never overwritten."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last'; got {which!r}.")
    check_free_folder(out_dir, "an export")
    model, tokenizer = runs.load_model(run_dir, which=which, device="cpu")
    used = "best" if which == "best" and runs.checkpoint_dir(run_dir, "best") else "last"
    meta = runs.checkpoint_meta(run_dir, used) or {}
    cfg = model.config
    eot = tokenizer.eot_id

    tensors = runs.model_tensors(model)
    if not cfg.bias:  # HF's GPT-2 always has biases: zeros compute the same as none
        for name, p in model.named_parameters():
            owner = name[: -len(".weight")]
            if name.endswith(".weight") and not owner.endswith(("wte", "wpe")) and name != "lm_head.weight":
                tensors.setdefault(owner + ".bias", torch.zeros(p.shape[0]))
    tensors = newleaf_to_hf(tensors)

    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "use_cache": True,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": "float32",
    }
    generation = {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot}

    def write(tmp: Path):
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", hf_config)
        _write_json(tmp / "generation_config.json", {k: v for k, v in generation.items() if v is not None})
        fast = write_tokenizer_files(tmp, tokenizer, cfg.block_size)
        _check_same_ids(fast, tokenizer, _probe_text(run_dir, tokenizer))
        write_card(tmp, run_dir, model, tokenizer, used, meta, repo_id)

    atomic_folder(out_dir, write, "an export")
    return out_dir


def _probe_text(run_dir: Path, tokenizer) -> str:
    """Text to check the exported tokenizer against ours: the start of the validation data, and for
    byte-level tokenizers a line of awkward text (accents, emoji, digits, runs of spaces and newlines)."""
    text = ""
    try:
        val = open_tokens(run_dir / "data" / "val.bin", tokenizer.vocab_size)
        text = tokenizer.decode(val[:4000].tolist())
    except NewleafError:
        pass  # an imported run has no data
    if tokenizer.kind != "char":
        text += "\nHello, world! It's 2024: naïve café — 東京 🙂  spaces\t\ttabs\n\n\n  'll 've 123456 x"
    return text


def _check_same_ids(fast, tokenizer, text: str) -> None:
    ours, theirs = tokenizer.encode(text), fast.encode(text, add_special_tokens=False).ids
    if ours != theirs:
        i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise TokenizerError(
            f"The exported tokenizer encodes differently from this run's tokenizer (first at "
            f"token {i}: {ours[i : i + 3]} vs {theirs[i : i + 3]}); nothing was written."
        )
    if fast.decode(ours, skip_special_tokens=False) != tokenizer.decode(ours):
        raise TokenizerError(
            "The exported tokenizer decodes differently from this run's tokenizer; nothing was written."
        )


# -- tokenizer files ---------------------------------------------------------------------------------------

GPT2_VOCAB_BPE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"
GPT2_ENCODER_JSON_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
ENDOFTEXT = "<|endoftext|>"


def write_tokenizer_files(folder: Path, tokenizer, block_size: int):
    """Write tokenizer.json + tokenizer_config.json (and GPT-2's vocab.json + merges.txt) for `tokenizer`, so
    AutoTokenizer.from_pretrained(folder) encodes and decodes as it does; returns the `tokenizers` object."""
    if tokenizer.kind == "gpt2":
        fast, extra = _gpt2_tokenizer(folder)
    elif tokenizer.kind == "char":
        fast, extra = _char_tokenizer(tokenizer)
    else:
        fast, extra = _bpe_tokenizer(tokenizer)
    # Special tokens (chat markers added by fine-tuning) take the ids after the ordinary vocabulary, in order.
    specials = getattr(tokenizer, "special_tokens", None) or {}
    for name in sorted(specials, key=specials.get):
        fast.add_special_tokens([AddedToken(name, special=True, normalized=False)])
        if fast.token_to_id(name) != specials[name]:
            raise TokenizerError(
                f"The special token {name!r} would get id {fast.token_to_id(name)} in the "
                f"exported tokenizer instead of {specials[name]}; nothing was written."
            )
    fast.save(str(folder / "tokenizer.json"))
    # No BOS/EOS added by encode, and decode leaves spaces alone: decode(encode(x)) == x.
    _write_json(
        folder / "tokenizer_config.json",
        {
            "model_max_length": block_size,
            "clean_up_tokenization_spaces": False,
            "add_bos_token": False,
            "add_eos_token": False,
            **extra,
        },
    )
    return fast


def _gpt2_tokenizer(tmp: Path):
    """GPT-2's own files (vocab.json = encoder.json, merges.txt = vocab.bpe) from tiktoken's download cache,
    plus the tokenizer.json that the fast tokenizer reads."""
    try:
        encoder = read_file_cached(GPT2_ENCODER_JSON_URL, GPT2_ENCODER_JSON_SHA256)
        merges = read_file_cached(GPT2_VOCAB_BPE_URL, GPT2_VOCAB_BPE_SHA256)
    except Exception as e:
        raise DownloadError(Text("hf.gpt2_tokenizer_files", why=network_reason(e))) from e
    (tmp / "vocab.json").write_bytes(encoder)
    (tmp / "merges.txt").write_bytes(merges)
    fast = Tokenizer(models.BPE.from_file(str(tmp / "vocab.json"), str(tmp / "merges.txt")))
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    fast.post_processor = processors.ByteLevel(trim_offsets=False)
    fast.add_special_tokens([AddedToken(ENDOFTEXT, special=True, normalized=False)])
    return fast, dict(
        tokenizer_class="GPT2Tokenizer",
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        add_prefix_space=False,
        errors="replace",
    )


def _char_tokenizer(tokenizer):
    """One token per character: every character (newlines too) is its own piece, looked up in a word-level
    vocabulary; decode joins the pieces with nothing between them."""
    fast = Tokenizer(models.WordLevel({c: i for i, c in enumerate(tokenizer.chars)}, unk_token=None))
    fast.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    fast.decoder = decoders.Fuse()
    return fast, dict(tokenizer_class="PreTrainedTokenizerFast")


def _bpe_tokenizer(tokenizer):
    """A byte-level BPE trained by rustbpe (tiktoken ranks) as a `tokenizers` BPE: the same split pattern,
    then bytes shown as GPT-2's printable characters, and merges derived from the ranks."""
    vocab, merges = bpe_vocab_and_merges(tokenizer.mergeable_ranks)
    fast = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    fast.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(tokenizer.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    fast.decoder = decoders.ByteLevel()
    fast.post_processor = processors.ByteLevel(trim_offsets=False)
    return fast, dict(tokenizer_class="PreTrainedTokenizerFast")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters, the alphabet of byte-level BPE files."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """tiktoken's ranks as a BPE vocabulary and merge list. tiktoken merges any adjacent pair whose join is a
    token, lowest rank first; so every split of a token into two tokens becomes a merge, ordered by the
    rank of the token it makes (as transformers' TikTokenConverter does)."""
    table = bytes_to_unicode()

    def show(b: bytes) -> str:
        return "".join(table[x] for x in b)

    vocab = {show(token): rank for token, rank in ranks.items()}
    merges = []
    for token, _rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        splits.sort(key=lambda lr: (ranks[lr[0]], ranks[lr[1]]))
        merges.extend((show(a), show(b)) for a, b in splits)
    return vocab, merges


# ----------------------------------------------------------------------------------------------------------


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
