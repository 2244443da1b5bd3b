"""The app's words, in English and Simplified Chinese. Every string of each language lives here, in EN and
ZH (same keys); components are built with `tr(...)` so the language switch can relabel them all at once.
"""
from __future__ import annotations

import gradio as gr

LANGUAGES = {"English": "en", "简体中文": "zh"}

EN: dict[str, str] = {
    # -- app -------------------------------------------------------------------------------------------------
    "app.title": "## 🌱 Newleaf — train your own small GPT",
    "app.intro": "Pick some text, choose a model size, press **Start** and watch a GPT learn to write like it. "
                 "Everything runs on this machine.",
    "app.language": "Language",
    "tab.data": "1 · Data", "tab.model": "2 · Model", "tab.train": "3 · Train", "tab.finetune": "4 · Fine-tune",
    "tab.generate": "5 · Generate", "tab.attention": "6 · Attention", "tab.runs": "7 · Runs",

    # -- data ------------------------------------------------------------------------------------------------
    "data.explainer": "**What is happening here.** A language model learns from a *corpus*: plain text. "
                      "Before the model sees it, a *tokenizer* cuts the text into tokens — single characters, or "
                      "pieces of words learned by byte-pair encoding (BPE) — and gives each a number. The "
                      "colours below show where the tokens begin and end. The first 90% of the text is used "
                      "for training, the last 10% to check how well the model does on text it never trained on.",
    "data.source": "Corpus",
    "data.upload": "Or upload your own text (.txt, .md, .jsonl, .csv — several at once)",
    "data.csv_column": "CSV text column (optional)",
    "data.tokenizer": "Tokenizer",
    "data.bpe_vocab": "BPE vocabulary size",
    "data.load": "Load and tokenize",
    "data.stats": "Statistics",
    "data.preview": "Preview, coloured by tokens",
    "data.uploaded": "Uploaded files",
    "data.tok.char": "Characters", "data.tok.gpt2": "GPT-2 BPE (50,257 tokens)", "data.tok.bpe": "Train my own BPE",
    "data.none": "No corpus loaded yet: pick one above and press *Load and tokenize*.",
    "data.src.default": "Default: Tiny Shakespeare (the offline dataset when there is no network)",
    "data.src.shakespeare": "Tiny Shakespeare — About 1.1 million characters of Shakespeare's plays; the classic "
                            "character-level corpus.",
    "data.src.python-stdlib": "Python standard library source — About 2 million characters of this machine's "
                              "Python standard library source; no download.",
    "data.src.upload": "My own files (upload below)",
    "data.using": "Using {name}.",
    "data.using_offline": "Tiny Shakespeare is not available offline; using the offline dataset {name} instead.",
    "data.no_files": "No files uploaded yet: drop one or more text files in the upload box.",
    "data.too_big": "{name} is larger than the {mb} MB upload limit.",
    "data.bpe_small": "This corpus only supports {got} BPE tokens (asked for {asked}); the model will use {got}.",
    "data.stat.characters": "characters", "data.stat.lines_words": "lines / words",
    "data.stat.distinct": "distinct characters", "data.stat.tokenizer": "tokenizer", "data.stat.tokens": "tokens",
    "data.stat.tokens_value": "{tokens} ({cpt} characters per token)",
    "data.stat.split": "training / validation", "data.stat.split_value": "first 90% / last 10% of the text",
    "data.stat.top": "most common characters",

    # -- model -----------------------------------------------------------------------------------------------
    "model.explainer": "**What is happening here.** A GPT is a stack of *layers*. Each layer lets every token "
                       "look back at the tokens before it (*attention*, split into *heads*) and then transforms "
                       "it (an MLP). *Width* is how many numbers describe each token; *context* is how many "
                       "tokens it can see at once. More of each means a better model — and more memory and "
                       "time. The estimates below are for this machine.",
    "model.preset": "Preset",
    "model.n_layer": "Layers", "model.n_head": "Attention heads", "model.n_embd": "Width (n_embd)",
    "model.block_size": "Context length (tokens)", "model.dropout": "Dropout",
    "model.estimate": "Estimate",
    "model.preset.tiny": "2 layers, width 32: for tests; learns in seconds, writes gibberish",
    "model.preset.nano": "3 layers, width 64: a first look in under a minute on a CPU",
    "model.preset.micro": "4 layers, width 128: the classic small CPU model",
    "model.preset.mini": "6 layers, width 192: better text, needs ~10+ minutes on a CPU",
    "model.preset.small": "6 layers, width 384 (nanoGPT's Shakespeare model): best on a GPU",
    "model.preset.gpt2": "GPT-2 small (124M parameters with its 50257-token vocabulary): GPU only",
    "model.est.params": "**{params} parameters**",
    "model.est.vocab_note": "(vocabulary of {n} characters until a corpus is loaded)",
    "model.est.memory": "- memory to train at batch {batch}: **{total}** (weights {weights}, gradients {gradients}, "
                        "AdamW state {optimizer}, activations {activations})",
    "model.est.time": "- time per training step on this machine: about **{ms} ms** (≈ {tps} tokens/s, from a "
                      "measured probe)",
    "model.too_long": "A context of {block} tokens is more than the {max} allowed here; choose a shorter context "
                      "length.",
    "model.too_big": "This model needs about {need} to train at batch size {batch}, more than the {limit} allowed "
                     "here. Choose fewer layers, a smaller width or context, or a smaller batch.",

    # -- train -----------------------------------------------------------------------------------------------
    "train.explainer": "**What is happening here.** Training shows the model a batch of text windows, measures "
                       "how surprised it was by each next token (the *loss*), and nudges every weight to be "
                       "less surprised next time. The *training loss* is measured on the batches it learns "
                       "from; the *validation loss* on text it never trains on — when the two drift apart, "
                       "the model is memorising. The learning rate warms up, then decays smoothly to the end "
                       "of the budget.",
    "train.lr": "Learning rate", "train.batch_size": "Batch size", "train.max_steps": "Steps",
    "train.max_time": "Time budget (seconds, 0 = no limit)", "train.eval_every": "Evaluate every (steps)",
    "train.seed": "Seed", "train.start": "Start", "train.stop": "Stop", "train.resume": "Resume",
    "train.title": "Run name",
    "train.status": "Status", "train.samples": "Newest samples", "train.log_scale": "Log scale",
    "train.smoothing": "Smoothing",
    "train.no_job": "No training job yet. Load a corpus (tab 1), pick a model (tab 2), then press Start.",
    "train.queued": "Waiting for a free training slot (position {position}).",
    "train.title.placeholder": "e.g. shakespeare-micro",
    "train.state.created": "created", "train.state.queued": "queued", "train.state.running": "running",
    "train.state.stopped": "stopped", "train.state.completed": "completed", "train.state.failed": "failed",
    "train.state.unknown": "unknown",
    "train.progress.step_of": "step {step} of {max_steps}", "train.progress.step": "step {step}",
    "train.progress.time": "{elapsed} s of {max_time} s", "train.progress.eta": "about {eta} s left",
    "train.sample_header": "— step {step} —",
    "train.no_stop": "There is no training job to stop.",
    "train.no_resume": "There is no run to resume: start one first.",
    "train.already": "This run is already training.",
    "train.finished": "This run has finished all its steps; start a new run to train more.",
    "train.too_many_steps": "At most {max} steps per run here; got {steps}.",
    "train.chart.loss": "Loss", "train.chart.step": "step", "train.chart.loss_axis": "loss (nats per token)",
    "train.chart.train_raw": "train (raw)", "train.chart.train": "train", "train.chart.val": "validation",
    "train.chart.lr": "learning rate", "train.chart.tps": "tokens / second",
    "train.chart.lr_trace": "lr", "train.chart.tps_trace": "tokens/s",

    # -- generate ----------------------------------------------------------------------------------------------
    "gen.explainer": "**What is happening here.** The model never writes a whole text at once. It reads the text so far "
                     "and gives every token of its vocabulary a score (a *logit*); softmax turns the scores into "
                     "probabilities, one token is drawn and appended, and the model runs again — one token at a time. "
                     "The knobs only change how that one token is drawn. **Temperature** T divides the logits before "
                     "the softmax, softmax(logits / T): below 1 the likely tokens get likelier (T = 0 always takes the "
                     "most likely one), above 1 the distribution flattens and rare tokens show up. **Top-k** keeps the "
                     "k most likely tokens, **top-p** the smallest set whose probabilities add up to p, **min-p** drops "
                     "tokens less likely than min-p × the most likely one; the **penalties** make tokens that already "
                     "appeared less likely. Be honest with yourself about what you see: a small model trained for "
                     "minutes on a CPU learns spelling, frequent words and the look of its text — not facts, and not "
                     "reasoning. Its text *looks* right far more often than it *is* right.",
    "gen.run": "Trained run",
    "gen.no_run": "No run selected: pick a trained run in the list above (train one in tab 3, or press ↻ to "
                  "refresh).",
    "gen.shared_example": "shared example",
    "gen.no_checkpoint_yet": "Run {run_id} has no checkpoint yet: let it train a little first.",
    "gen.summary.tokenizer": "`{kind}` tokenizer, {vocab} tokens",
    "gen.summary.shape": "{layers} layers × {heads} heads, width {width}",
    "gen.summary.context": "context {block}", "gen.summary.step": "step {step}",
    "gen.summary.val_loss": ", val loss {loss}",
    "gen.tab.completion": "Complete a text", "gen.tab.chat": "Chat",
    "gen.presets": "**Presets**",
    "gen.preset.precise": "Precise", "gen.preset.balanced": "Balanced", "gen.preset.creative": "Creative",
    "gen.sampling": "Sampling settings",
    "gen.max_new_tokens": "Max new tokens",
    "gen.temperature": "Temperature", "gen.temperature.info": "0 = greedy: always the most likely token",
    "gen.top_k": "Top-k", "gen.top_k.info": "keep the k most likely tokens; 0 = off",
    "gen.top_p": "Top-p (nucleus)", "gen.top_p.info": "keep the smallest set of tokens that holds this much "
                                                       "probability; 1 = off",
    "gen.min_p": "Min-p", "gen.min_p.info": "drop tokens less likely than min-p × the most likely one; 0 = off",
    "gen.repetition_penalty": "Repetition penalty", "gen.repetition_penalty.info": "above 1 discourages tokens "
                                                                                     "already in the text; 1 = off",
    "gen.presence_penalty": "Presence penalty", "gen.frequency_penalty": "Frequency penalty",
    "gen.penalty.info": "subtracted from the logit of generated tokens (once / per use); 0 = off",
    "gen.seed": "Seed", "gen.seed.info": "blank or -1 = random; the same seed and settings give the same text",
    "gen.seed_used": "Seed used",
    "gen.stop": "Stop strings", "gen.stop.info": "separated by commas or new lines; write \\n for a line break",
    "gen.stop.placeholder": "e.g. \\n\\n, THE END",
    "gen.num_samples": "Number of samples",
    "gen.prompt": "Prompt", "gen.prompt.placeholder": "The beginning of a text for the model to continue…",
    "gen.generate": "Generate", "gen.stop_button": "Stop",
    "gen.feedback.hint": "Rate each sample with 👍 / 👎: ratings are saved with the run (feedback.jsonl).",
    "gen.feedback.saved": "Thanks! Your rating ({rating}) was saved with the run.",
    "gen.tokens": "Tokens, coloured by the probability the model gave them — click one to see the alternatives",
    "gen.inspect": "Show the tokens of sample",
    "gen.alternatives": "Alternatives at the clicked token",
    "gen.alt_title": "Token {n} “{token}”: drawn with probability {p}",
    "gen.next.title": "Next token: what the model predicts right after the prompt",
    "gen.next.explainer": "Press the button to run the model once on the prompt. Then move temperature, top-k, "
                          "top-p or min-p in *Sampling settings*: the bars are recomputed from the saved logits at "
                          "once, without running the model again. Grey: the model's own probabilities; green: what "
                          "the sampler would actually draw from.",
    "gen.next.compute": "Predict the next token",
    "gen.next.plot": "Most likely next tokens",
    "gen.next.raw": "the model: softmax(logits)", "gen.next.after": "after temperature, top-k, top-p, min-p",
    "gen.next.summary": "After the prompt ({tokens} tokens), {kept} of {vocab} tokens can still be drawn with "
                        "these settings; the most likely is “{top}” at {p}.",
    "gen.next.greedy": "Temperature 0 is greedy: the most likely token, “{top}”, is always chosen.",
    "gen.chat.note": "A model pretrained on plain text has never seen a conversation: it simply continues a "
                     "“User: … / Assistant: …” transcript. Fine-tune it on chats for real replies.",
    "gen.chatbot": "Conversation",
    "gen.chat.message": "Message", "gen.chat.placeholder": "Write a message and press Enter",
    "gen.chat.send": "Send", "gen.chat.clear": "Clear",
    "gen.chat.empty": "Write a message first.",
    "gen.rate_first": "Generate some text first, then rate it.",
    "gen.no_prompt": "Type a prompt first: the model predicts the token that comes right after it.",
    "gen.prompt_empty": "The prompt is empty after tokenization; type at least one character.",
    "gen.prompt_too_long": "The prompt is {n} characters; at most {max} are allowed here (the model reads only its "
                           "last context window anyway).",
    "gen.err.empty": "{name} is empty; give it a number.",
    "gen.err.number": "{name} must be a number; got {value}.",
    "gen.err.finite": "{name} must be a finite number; got {value}.",
    "gen.err.seed": "Seed must be a whole number from 0 (or -1 for random); got {seed}.",
    "gen.err.top_k": "Top-k must be 0 (off) or more; got {top_k}.",
    "gen.err.shaping": "Temperature, top-k, top-p and min-p must be numbers.",
    "gen.err.rating": "A rating is +1 (thumbs up) or -1 (thumbs down).",

    # -- attention ---------------------------------------------------------------------------------------------
    "attn.explainer": "**What is happening here.** In every layer, each token (a *query*: a row of the heatmap) "
                      "decides how much to look at each token of the prompt (a *key*: a column). The weights of a row "
                      "are positive and add up to 1, so a row shows where that token takes its information from. A GPT "
                      "is *causal*: a token may look only at itself and the tokens before it, never at later ones — "
                      "everything above the diagonal is masked out (blank), which is why the map is a triangle. Each "
                      "layer has several *heads* with their own weights, so each head can learn its own pattern (the "
                      "previous token, the start of the word, the last line break…). Choose “all” to compare them.",
    "attn.prompt": "Prompt", "attn.prompt.placeholder": "A short text to look inside…",
    "attn.layer": "Layer", "attn.head": "Head", "attn.head.info": "all = every head of the layer side by side",
    "attn.show": "Show attention",
    "attn.plot": "Attention weights (rows: the token looking; columns: the tokens it looks at)",
    "attn.note": "{n} tokens.",
    "attn.note.cut": "The prompt has {n} tokens, but only the last {shown} are used and shown: {why}.",
    "attn.why.context": "the model sees at most {block} tokens at once",
    "attn.why.cap": "larger maps would be unreadable",
    "attn.title": "Layer {layer}, head {head}", "attn.title.all": "Layer {layer}, all {n} heads",
    "attn.x": "key: the token looked at", "attn.y": "query: the token looking",
    "attn.head_n": "head {n}", "attn.weight": "weight",
    "attn.head.all": "all",
    "attn.no_prompt": "Type a prompt first: the heatmap shows how its tokens attend to each other.",
    "attn.err.pick": "Choose a layer from 1 and a head from 1 (or “{all}”); got {layer} and {head}.",
    "attn.err.layer": "This model has layers 1 to {n}; got {layer}.",
    "attn.err.head": "This model has heads 1 to {n} per layer; got {head}.",

    # -- runs --------------------------------------------------------------------------------------------------
    "runs.explainer": "**What is happening here.** Every training job is a *run directory*: its settings "
                      "(`config.json`), the tokenizer, a log of the loss at every logged step (`metrics.jsonl`), "
                      "the text it wrote while training (`samples.jsonl`), your 👍 / 👎 ratings, and checkpoints "
                      "(`best` — the lowest validation loss — and `last`). Pick several runs to overlay their loss "
                      "curves. A lower *validation* loss is better, but only between runs with the **same "
                      "tokenizer**: a loss is measured per token, and tokens differ. To compare runs with different "
                      "tokenizers, switch to **bits per character** (`val_bpc`, measured at each evaluation).",
    "runs.table": "Your runs and the shared examples", "runs.refresh": "Refresh",
    "runs.col.title": "Title", "runs.col.state": "State", "runs.col.steps": "Steps",
    "runs.col.best_val": "Best val loss", "runs.col.best_bpc": "Best val bits/char", "runs.col.model": "Model",
    "runs.col.tokenizer": "Tokenizer", "runs.col.data": "Data", "runs.col.created": "Created",
    "runs.col.up": "👍", "runs.col.down": "👎", "runs.col.id": "Run ID",
    "runs.example": "(example)",
    "runs.model_size": "{layers} layers · {width} wide · {params} params",
    "runs.state.created": "ready", "runs.state.queued": "queued", "runs.state.running": "training",
    "runs.state.stopped": "stopped", "runs.state.completed": "completed", "runs.state.failed": "failed",
    "runs.state.unknown": "unknown",
    "runs.compare": "Compare runs", "runs.compare_pick": "Runs to overlay",
    "runs.log_scale": "Log scale", "runs.bpc": "Bits per character (fair across tokenizers)",
    "runs.plot": "Loss curves", "runs.axis.step": "Step", "runs.axis.loss": "Loss (nats per token)",
    "runs.axis.bpc": "Bits per character", "runs.trace.train": "train", "runs.trace.val": "validation",
    "runs.plot.empty": "Pick one or more runs above to overlay their curves.",
    "runs.plot.no_metrics": "The chosen runs have logged nothing yet.",
    "runs.actions": "Use, download or delete a run", "runs.pick": "Run",
    "runs.pick_info": "Or click a row of the table.",
    "runs.load": "Use in Generate and Attention",
    "runs.loaded": "**{title}** is loaded: open the Generate or Attention tab to play with it.",
    "runs.which": "Checkpoint", "runs.which_info": "best = lowest validation loss; last = the newest",
    "runs.download_ckpt": "Download checkpoint (.zip)",
    "runs.download_hf": "Download for Hugging Face transformers (.zip)",
    "runs.file": "Download",
    "runs.delete": "Delete…",
    "runs.confirm_delete": "Really delete **{title}**? Its checkpoints, logs and samples are removed. "
                           "This cannot be undone.",
    "runs.confirm_yes": "Yes, delete it", "runs.cancel": "Cancel",
    "runs.deleted": "Deleted **{title}**.",
    "runs.confirm_first": "To delete a run, press Delete… first, then confirm with “Yes, delete it”.",
    "runs.no_pick": "Pick a run first (in the list, or by clicking a row of the table).",
    "runs.too_many": "Compare at most {n} runs at once.",
    "runs.no_checkpoint": "{title} has no checkpoint yet: train it first, then download it.",
    "runs.no_hf": "The Hugging Face export is not available in this version of Newleaf.",
    "runs.upload": "Upload a run (.zip downloaded from this tab): it becomes one of your runs",
    "runs.upload_none": "Choose a .zip file of a run first.",
    "runs.upload_too_big": "That file is larger than the {mb} MB upload limit.",
    "runs.uploaded": "Uploaded **{title}**: it is one of your runs now; use it in Generate and Attention.",

    # -- finetune ----------------------------------------------------------------------------------------------
    "ft.explainer": "**What is happening here.** *Fine-tuning* starts from a model that has already learned something "
                    "(one of your runs, or GPT-2) and trains it a little more on new data, with a lower learning rate "
                    "so that it keeps what it knew. With *conversations*, each example is written with chat markers "
                    "(`<|user|>…<|end|><|assistant|>…<|end|>`) and the loss counts **only the assistant's tokens**: "
                    "the model should learn to *answer*, not to write the questions. The base model is measured "
                    "before training and the result after, on held-out examples it never trains on. **Full** "
                    "fine-tuning updates every weight (you may freeze the first layers). **LoRA** freezes every "
                    "weight and learns a small low-rank update next to the big matrices, W + (α / r)·B·A: far fewer "
                    "trainable parameters, and the base stays as it was. To be honest about it: LoRA is good at "
                    "adjusting how a model uses what it already knows; a tiny model learns a brand-new skill such "
                    "as arithmetic with LoRA only slowly, so full fine-tuning is the method for the demo. The demo "
                    "asks sums like “What is 37 + 45?” and scores the exact answers to held-out questions.",
    "ft.base.title": "#### Base model: where the weights start",
    "ft.base.kind": "Start from",
    "ft.base.run": "Your run (or a shared example)",
    "ft.base.hub": "GPT-2 model from the Hugging Face Hub",
    "ft.base.hub.info": "downloaded once (this needs the network the first time), then read from the cache",
    "ft.base.folder": "Local folder with a Hugging Face GPT-2 model",
    "ft.base.folder.placeholder": "/path/to/a folder with config.json and model.safetensors",
    "ft.base.preset": "Size of the fresh model",
    "ft.base.preset.info": "a model from scratch knows nothing yet: enough for the arithmetic demo",
    "ft.data.title": "#### Data",
    "ft.data.source": "Fine-tune on",
    "ft.data.upload": "Or upload files: .jsonl conversations or instructions, .csv with prompt and response columns "
                      "(or one text column), .txt / .md plain text",
    "ft.data.prompt_column": "CSV prompt column", "ft.data.response_column": "CSV response column",
    "ft.data.column.info": "blank: found by name (prompt/response, instruction/output, question/answer…)",
    "ft.data.too_long": "Examples longer than the context",
    "ft.data.check": "Check data",
    "ft.data.none": "Press **Check data** to see how the data is understood, or just press **Start**: the arithmetic "
                    "demo is ready.",
    "ft.check.chat": "✅ **{name}**: {n} conversations. The loss counts only the assistant's replies.",
    "ft.check.held_out": "{n} of them are held-out questions, never trained on: they are the score.",
    "ft.check.text": "✅ **{name}**: plain text, {chars} characters ({tokens} tokens). Continued pretraining: every "
                     "token counts.",
    "ft.check.fits": "Every example fits the context of {block} tokens.",
    "ft.check.later": "Examples too long for the context are counted when training starts ({why}).",
    "ft.check.preview": "One example, as the model sees it:",
    "ft.method.title": "#### Method",
    "ft.method": "Method",
    "ft.freeze": "Freeze the first N layers", "ft.freeze.info": "0 = every layer trains",
    "ft.lora_rank": "LoRA rank r", "ft.lora_alpha": "LoRA alpha α", "ft.lora_dropout": "LoRA dropout",
    "ft.lora_layers": "Layers with adapters", "ft.lora_layers.info": "block numbers such as 0,1; blank = all",
    "ft.params": "🧮 **{trainable}** of {total} parameters train ({fraction}).",
    "ft.params.approx": "About: a fresh model's vocabulary comes from the data.",
    "ft.params.unknown": "🧮 The number of parameters is known once the model is downloaded.",
    "ft.train.title": "#### Training",
    "ft.lr.info": "the default follows the method: lower for full fine-tuning, higher for LoRA",
    "ft.no_job": "No fine-tuning job yet. The arithmetic demo is ready: press Start.",
    "ft.results.title": "#### Before and after",
    "ft.results.waiting": "The base model is measured before training and the fine-tuned model after; the numbers "
                          "appear here.",
    "ft.result.em": "🎯 Exact match on {n} held-out questions: base **{before}** → fine-tuned **{after}**",
    "ft.result.em_base": "🎯 Exact match of the base model on {n} held-out questions: **{before}**. The fine-tuned "
                         "model is measured when training ends.",
    "ft.result.loss": "Validation loss (lower is better): base **{before}** → fine-tuned **{after}**",
    "ft.result.loss_base": "Validation loss of the base model: **{before}**. The fine-tuned model is measured when "
                           "training ends.",
    "ft.results.table": "Base vs fine-tuned, on the validation examples",
    "ft.col.metric": "Metric", "ft.col.base": "Base", "ft.col.finetuned": "Fine-tuned", "ft.col.prompt": "Prompt",
    "ft.metric.val_loss": "Validation loss", "ft.metric.perplexity": "Perplexity",
    "ft.metric.exact_match": "Exact match (%)", "ft.metric.bleu": "BLEU (0–100)", "ft.metric.rouge_l": "ROUGE-L (0–1)",
    "ft.metric.distinct_1": "Distinct-1", "ft.metric.distinct_2": "Distinct-2",
    "ft.compare.title": "#### Compare outputs",
    "ft.compare.prompts": "Prompts, one per line",
    "ft.compare.placeholder": "What is 12 + 30?",
    "ft.compare.run": "Compare base and fine-tuned",
    "ft.compare.table": "Greedy replies, side by side",
    "ft.compare.none": "Type at least one prompt (one per line).",
    "ft.compare.no_run": "Start a fine-tuning run first: its base and its result are compared.",
    "ft.compare.no_checkpoint": "This run has no checkpoint yet: let it train a little first.",
    "ft.compare.not_finetune": "This run is not a fine-tuning run: it has no base model to compare with.",
    "ft.no_run": "There is no fine-tuning job to stop.",
    "ft.base.pick_run": "Pick one of your runs as the base (train one in tab 3), or choose another kind of base.",
    "ft.base.bad_hub": "“{name}” is not a Hugging Face Hub model id like gpt2, distilgpt2 or owner/name.",
    "ft.base.no_folder": "Type the path of a folder that holds a Hugging Face GPT-2 model (config.json and "
                         "model.safetensors).",
    "ft.base.folder_in_runs": "That folder is inside the runs directory: to start from one of your runs, choose "
                              "“Your run”.",
    "ft.base.folder_space": "Local folders cannot be used on this shared server: choose one of your runs or a Hub "
                            "model.",
    "ft.started": "Fine-tuning {trainable} of {total} parameters ({fraction}), starting from {base}.",
    "ft.title.placeholder": "e.g. arithmetic-full",
    "ft.kind.scratch": "A fresh small model (for the demo)", "ft.kind.run": "One of my runs",
    "ft.kind.hub": "GPT-2 from the Hugging Face Hub", "ft.kind.folder": "A local folder",
    "ft.method.full": "Full fine-tuning", "ft.method.lora": "LoRA",
    "ft.too_long.truncate": "cut their end", "ft.too_long.drop": "leave them out",
    "ft.src.demo": "Demo: {title}: {train} training questions and {test} held-out ones, scored by exact match",
    "ft.src.text": "{title} (plain text)",
    "ft.task.arithmetic": "Two-digit addition", "ft.task.arithmetic-small": "One-digit addition",
    "ft.dataset.shakespeare": "Tiny Shakespeare", "ft.dataset.python-stdlib": "Python standard library source",
    "ft.data.csv_column": "CSV text column",
    "ft.data.csv_column.info": "for plain text: blank = the column named text, or the only column",
    "ft.data.no_files": "No files uploaded yet: drop a .jsonl, .csv, .txt or .md file in the upload box.",
    "ft.data.unknown": "Unknown data choice {value}.",
    "ft.data.columns_clash": "Name either a prompt and a response column (conversations) or a text column (plain "
                             "text), not both.",
    "ft.check.context_unknown": "the base model's context is not known yet",
    "ft.check.no_hold_out": "Only {n} examples: too few to hold some out, so validation will reuse the training "
                            "examples.",
    "ft.params.approx_data": "About: the data may add tokens to the vocabulary (chat markers, new characters), whose "
                             "embeddings train too; exact numbers after Start.",
    "ft.result.em_train": "🎯 Exact match on {n} training questions (too few examples to hold any out): base "
                          "**{before}** → fine-tuned **{after}**",
    "ft.result.em_base_train": "🎯 Exact match of the base model on {n} training questions (too few examples to hold "
                               "any out): **{before}**. The fine-tuned model is measured when training ends.",
    "ft.base.fresh_label": "a fresh {preset} model",
    "ft.base.no_such_folder": "No folder {path}.",
    "ft.name.freeze": "Frozen layers", "ft.name.lora_rank": "LoRA rank", "ft.name.lora_alpha": "LoRA alpha",
    "ft.name.lora_dropout": "LoRA dropout", "ft.name.max_time": "Time budget",
    "ft.err.layers": "Layers with adapters are block numbers separated by commas, like 0,1; got {value}.",
    "ft.err.preset": "Choose a fresh model size among {sizes}; got {value}.",
    "ft.err.kind": "Unknown kind of base model {value}; choose one of {kinds}.",
    "ft.err.steps": "Steps must be from 1 to {max}; got {steps}.",
}

ZH: dict[str, str] = {
    # -- app -------------------------------------------------------------------------------------------------
    "app.title": "## 🌱 Newleaf — 训练你自己的小型 GPT",
    "app.intro": "选一段文本，选一个模型大小，按下**开始**，看着 GPT 学会模仿它写作。一切都在这台机器上运行。",
    "app.language": "语言",
    "tab.data": "1 · 数据", "tab.model": "2 · 模型", "tab.train": "3 · 训练", "tab.finetune": "4 · 微调",
    "tab.generate": "5 · 生成", "tab.attention": "6 · 注意力", "tab.runs": "7 · 运行记录",

    # -- data ------------------------------------------------------------------------------------------------
    "data.explainer": "**这里在做什么。** 语言模型从*语料*（纯文本）中学习。模型看到文本之前，*分词器*先把文本切成"
                      "词元（token）——单个字符，或由字节对编码（BPE）学到的词片段——并给每个词元一个编号。下面的颜色"
                      "标出了每个词元的起止。文本的前 90% 用于训练，后 10% 用来检验模型在从未训练过的文本上的表现。",
    "data.source": "语料",
    "data.upload": "或上传你自己的文本（.txt、.md、.jsonl、.csv，可一次多个）",
    "data.csv_column": "CSV 文本列（可选）",
    "data.tokenizer": "分词器",
    "data.bpe_vocab": "BPE 词表大小",
    "data.load": "加载并分词",
    "data.stats": "统计",
    "data.preview": "预览（按词元着色）",
    "data.uploaded": "已上传的文件",
    "data.tok.char": "字符", "data.tok.gpt2": "GPT-2 BPE（50,257 个词元）", "data.tok.bpe": "训练我自己的 BPE",
    "data.none": "还没有加载语料：在上面选一个，然后按“加载并分词”。",
    "data.src.default": "默认：Tiny Shakespeare（没有网络时改用离线数据集）",
    "data.src.shakespeare": "Tiny Shakespeare —— 约 110 万个字符的莎士比亚戏剧；经典的字符级语料。",
    "data.src.python-stdlib": "Python 标准库源码 —— 这台机器上约 200 万个字符的 Python 标准库源代码；无需下载。",
    "data.src.upload": "我自己的文件（在下方上传）",
    "data.using": "使用 {name}。",
    "data.using_offline": "Tiny Shakespeare 无法离线获取；改用离线数据集 {name}。",
    "data.no_files": "还没有上传文件：把一个或多个文本文件拖到上传框里。",
    "data.too_big": "{name} 超过了 {mb} MB 的上传上限。",
    "data.bpe_small": "这份语料只能支持 {got} 个 BPE 词元（你要求的是 {asked} 个）；模型将使用 {got} 个。",
    "data.stat.characters": "字符数", "data.stat.lines_words": "行数 / 词数",
    "data.stat.distinct": "不同字符数", "data.stat.tokenizer": "分词器", "data.stat.tokens": "词元数",
    "data.stat.tokens_value": "{tokens}（平均每个词元 {cpt} 个字符）",
    "data.stat.split": "训练 / 验证", "data.stat.split_value": "文本的前 90% / 后 10%",
    "data.stat.top": "最常见的字符",

    # -- model -----------------------------------------------------------------------------------------------
    "model.explainer": "**这里在做什么。** GPT 由多个*层*堆叠而成。每一层让每个词元回看它之前的词元（*注意力*，"
                       "分成多个*头*），然后再对它做变换（MLP）。*宽度*是描述每个词元的数字个数；*上下文*是它一次"
                       "能看到的词元数。越大模型越好，也越耗内存和时间。下面的估计针对这台机器。",
    "model.preset": "预设",
    "model.n_layer": "层数", "model.n_head": "注意力头数", "model.n_embd": "宽度（n_embd）",
    "model.block_size": "上下文长度（词元）", "model.dropout": "Dropout",
    "model.estimate": "估计",
    "model.preset.tiny": "2 层，宽 32：用于测试；几秒就学完，写出来的是乱码",
    "model.preset.nano": "3 层，宽 64：在 CPU 上不到一分钟就能先看一眼",
    "model.preset.micro": "4 层，宽 128：经典的 CPU 小模型",
    "model.preset.mini": "6 层，宽 192：文本更好，在 CPU 上要 10 分钟以上",
    "model.preset.small": "6 层，宽 384（nanoGPT 的莎士比亚模型）：最好在 GPU 上训练",
    "model.preset.gpt2": "GPT-2 small（1.24 亿参数，词表 50257 个词元）：只适合 GPU",
    "model.est.params": "**{params} 个参数**",
    "model.est.vocab_note": "（加载语料之前按 {n} 个字符的词表计算）",
    "model.est.memory": "- 以批大小 {batch} 训练所需内存：**{total}**（权重 {weights}，梯度 {gradients}，"
                        "AdamW 状态 {optimizer}，激活值 {activations}）",
    "model.est.time": "- 在这台机器上每个训练步约 **{ms} 毫秒**（≈ 每秒 {tps} 个词元，来自实测）",
    "model.too_long": "{block} 个词元的上下文超过了这里允许的 {max} 个；请选择更短的上下文长度。",
    "model.too_big": "以批大小 {batch} 训练这个模型大约需要 {need}，超过了这里允许的 {limit}。请减少层数、"
                     "宽度或上下文长度，或减小批大小。",

    # -- train -----------------------------------------------------------------------------------------------
    "train.explainer": "**这里在做什么。** 训练时，模型每次看一批文本窗口，衡量它对每个下一个词元有多“意外”"
                       "（*损失*），再微调每个权重，让下次少一些意外。*训练损失*在它学习的批次上测得；*验证损失*在它从未"
                       "训练过的文本上测得——两者分开时，说明模型在死记硬背。学习率先预热，再平滑衰减到预算结束。",
    "train.lr": "学习率", "train.batch_size": "批大小", "train.max_steps": "步数",
    "train.max_time": "时间预算（秒，0 = 不限）", "train.eval_every": "每隔多少步评估",
    "train.seed": "随机种子", "train.start": "开始", "train.stop": "停止", "train.resume": "继续",
    "train.title": "运行名称",
    "train.status": "状态", "train.samples": "最新样本", "train.log_scale": "对数坐标",
    "train.smoothing": "平滑",
    "train.no_job": "还没有训练任务。先加载语料（第 1 页），选择模型（第 2 页），再按“开始”。",
    "train.queued": "正在等待空闲的训练名额（第 {position} 位）。",
    "train.title.placeholder": "例如 shakespeare-micro",
    "train.state.created": "已创建", "train.state.queued": "排队中", "train.state.running": "训练中",
    "train.state.stopped": "已停止", "train.state.completed": "已完成", "train.state.failed": "失败",
    "train.state.unknown": "未知",
    "train.progress.step_of": "第 {step} 步，共 {max_steps} 步", "train.progress.step": "第 {step} 步",
    "train.progress.time": "已用 {elapsed} 秒，共 {max_time} 秒", "train.progress.eta": "约剩 {eta} 秒",
    "train.sample_header": "— 第 {step} 步 —",
    "train.no_stop": "没有可以停止的训练任务。",
    "train.no_resume": "没有可以继续的运行：请先开始一个。",
    "train.already": "这个运行已经在训练了。",
    "train.finished": "这个运行已经跑完了所有步数；要继续训练，请开始一个新的运行。",
    "train.too_many_steps": "这里每个运行最多 {max} 步；收到的是 {steps} 步。",
    "train.chart.loss": "损失", "train.chart.step": "步数", "train.chart.loss_axis": "损失（每词元奈特）",
    "train.chart.train_raw": "训练（原始）", "train.chart.train": "训练", "train.chart.val": "验证",
    "train.chart.lr": "学习率", "train.chart.tps": "词元 / 秒",
    "train.chart.lr_trace": "学习率", "train.chart.tps_trace": "词元/秒",

    # -- generate ----------------------------------------------------------------------------------------------
    "gen.explainer": "**这里在做什么。** 模型从不一次写出整段文本。它读取目前为止的文本，给词表中的每个词元打一个分数"
                     "（*logit*）；softmax 把分数变成概率，抽出一个词元接到末尾，然后模型再运行一次——每次只预测一个"
                     "词元。这些旋钮只改变“如何抽出这一个词元”。**温度** T 在 softmax 之前除以 logits，即 "
                     "softmax(logits / T)：小于 1 时，可能的词元更可能被选中（T = 0 总是选最可能的那个）；大于 1 时"
                     "分布变平，罕见词元也会出现。**Top-k** 只保留最可能的 k 个词元，**top-p** 保留概率之和达到 p 的"
                     "最小集合，**min-p** 去掉概率低于“min-p × 最可能词元概率”的词元；各种**惩罚**让已经出现过的"
                     "词元变得不太可能。请如实看待结果：在 CPU 上训练几分钟的小模型能学会拼写、常见词和文本的样子，"
                     "但学不会事实，也不会推理。它写出的文字*看起来*对，远比*真的*对要常见。",
    "gen.run": "已训练的运行",
    "gen.no_run": "还没有选择运行：在上面的列表中选一个已训练的运行（可在第 3 页训练一个，或按 ↻ 刷新）。",
    "gen.shared_example": "共享示例",
    "gen.no_checkpoint_yet": "运行 {run_id} 还没有检查点：先让它训练一会儿。",
    "gen.summary.tokenizer": "分词器 `{kind}`，{vocab} 个词元",
    "gen.summary.shape": "{layers} 层 × {heads} 个头，宽 {width}",
    "gen.summary.context": "上下文 {block}", "gen.summary.step": "第 {step} 步",
    "gen.summary.val_loss": "，验证损失 {loss}",
    "gen.tab.completion": "续写文本", "gen.tab.chat": "对话",
    "gen.presets": "**预设**",
    "gen.preset.precise": "精确", "gen.preset.balanced": "均衡", "gen.preset.creative": "有创意",
    "gen.sampling": "采样设置",
    "gen.max_new_tokens": "最多生成的词元数",
    "gen.temperature": "温度", "gen.temperature.info": "0 = 贪心：总是选最可能的词元",
    "gen.top_k": "Top-k", "gen.top_k.info": "只保留最可能的 k 个词元；0 = 关闭",
    "gen.top_p": "Top-p（核采样）", "gen.top_p.info": "保留概率之和达到该值的最小词元集合；1 = 关闭",
    "gen.min_p": "Min-p", "gen.min_p.info": "去掉概率低于“min-p × 最可能词元概率”的词元；0 = 关闭",
    "gen.repetition_penalty": "重复惩罚", "gen.repetition_penalty.info": "大于 1 时抑制文本中已出现的词元；1 = 关闭",
    "gen.presence_penalty": "存在惩罚", "gen.frequency_penalty": "频率惩罚",
    "gen.penalty.info": "从已生成词元的 logit 中减去（出现过就减一次 / 每出现一次减一次）；0 = 关闭",
    "gen.seed": "随机种子", "gen.seed.info": "留空或 -1 = 随机；相同的种子和设置会得到相同的文本",
    "gen.seed_used": "实际使用的种子",
    "gen.stop": "停止字符串", "gen.stop.info": "用逗号或换行分隔；用 \\n 表示换行",
    "gen.stop.placeholder": "例如 \\n\\n, THE END",
    "gen.num_samples": "样本数",
    "gen.prompt": "提示词", "gen.prompt.placeholder": "给出一段文本的开头，让模型接着写……",
    "gen.generate": "生成", "gen.stop_button": "停止",
    "gen.feedback.hint": "用 👍 / 👎 给每个样本打分：评分会和这次运行一起保存（feedback.jsonl）。",
    "gen.feedback.saved": "谢谢！你的评分（{rating}）已和这次运行一起保存。",
    "gen.tokens": "词元，按模型给出的概率着色——点击一个词元查看其他候选",
    "gen.inspect": "显示这个样本的词元",
    "gen.alternatives": "所点击词元处的候选词元",
    "gen.alt_title": "第 {n} 个词元“{token}”：抽中的概率为 {p}",
    "gen.next.title": "下一个词元：模型对提示词之后紧接着的预测",
    "gen.next.explainer": "按下按钮，让模型在提示词上运行一次。然后在“采样设置”中移动温度、top-k、top-p 或 min-p："
                          "柱状图会立即根据保存下来的 logits 重新计算，无需再次运行模型。灰色：模型自己的概率；"
                          "绿色：采样器实际抽取时所用的概率。",
    "gen.next.compute": "预测下一个词元",
    "gen.next.plot": "最可能的下一个词元",
    "gen.next.raw": "模型本身：softmax(logits)", "gen.next.after": "经过温度、top-k、top-p、min-p 之后",
    "gen.next.summary": "在提示词（{tokens} 个词元）之后，按当前设置，{vocab} 个词元中还有 {kept} 个可能被抽中；"
                        "最可能的是“{top}”，概率 {p}。",
    "gen.next.greedy": "温度为 0 即贪心：总是选最可能的词元“{top}”。",
    "gen.chat.note": "只在纯文本上预训练的模型从没见过对话：它只是接着写一份“User: … / Assistant: …”的记录。"
                     "想要真正的回复，请先用对话数据微调它。",
    "gen.chatbot": "对话",
    "gen.chat.message": "消息", "gen.chat.placeholder": "输入一条消息，按回车发送",
    "gen.chat.send": "发送", "gen.chat.clear": "清空",
    "gen.chat.empty": "请先输入一条消息。",
    "gen.rate_first": "请先生成一些文本，再给它打分。",
    "gen.no_prompt": "请先输入提示词：模型预测的是紧跟在它后面的词元。",
    "gen.prompt_empty": "分词之后提示词是空的；请至少输入一个字符。",
    "gen.prompt_too_long": "提示词有 {n} 个字符；这里最多允许 {max} 个（反正模型只读最后一个上下文窗口）。",
    "gen.err.empty": "“{name}”是空的；请填一个数字。",
    "gen.err.number": "“{name}”必须是数字；收到的是 {value}。",
    "gen.err.finite": "“{name}”必须是有限的数字；收到的是 {value}。",
    "gen.err.seed": "随机种子必须是从 0 起的整数（或 -1 表示随机）；收到的是 {seed}。",
    "gen.err.top_k": "Top-k 必须是 0（关闭）或更大；收到的是 {top_k}。",
    "gen.err.shaping": "温度、top-k、top-p 和 min-p 都必须是数字。",
    "gen.err.rating": "评分只能是 +1（赞）或 -1（踩）。",

    # -- attention ---------------------------------------------------------------------------------------------
    "attn.explainer": "**这里在做什么。** 在每一层中，每个词元（*查询*，即热力图的一行）决定要在多大程度上关注提示词中的"
                      "每个词元（*键*，即一列）。一行中的权重都为正数，加起来等于 1，所以一行显示了这个词元从哪里获取信息。"
                      "GPT 是*因果*模型：一个词元只能看它自己和它之前的词元，永远看不到后面的词元——对角线以上的部分都被"
                      "遮住（留空），所以这张图是一个三角形。每一层有多个*头*，各有自己的权重，因此每个头可以学到不同的"
                      "模式（前一个词元、词的开头、上一个换行……）。选择“all”可以把它们放在一起比较。",
    "attn.prompt": "提示词", "attn.prompt.placeholder": "输入一小段文本，看看模型内部……",
    "attn.layer": "层", "attn.head": "头", "attn.head.info": "全部 = 并排显示这一层的所有头",
    "attn.show": "显示注意力",
    "attn.plot": "注意力权重（行：正在“看”的词元；列：被看的词元）",
    "attn.note": "共 {n} 个词元。",
    "attn.note.cut": "提示词有 {n} 个词元，但只使用并显示最后 {shown} 个：{why}。",
    "attn.why.context": "模型一次最多只能看到 {block} 个词元",
    "attn.why.cap": "更大的图将无法看清",
    "attn.title": "第 {layer} 层，第 {head} 个头", "attn.title.all": "第 {layer} 层，全部 {n} 个头",
    "attn.x": "键：被看的词元", "attn.y": "查询：正在看的词元",
    "attn.head_n": "第 {n} 个头", "attn.weight": "权重",
    "attn.head.all": "全部",
    "attn.no_prompt": "请先输入提示词：热力图显示它的词元之间如何相互关注。",
    "attn.err.pick": "请选择从 1 开始的层和从 1 开始的头（或“{all}”）；收到的是 {layer} 和 {head}。",
    "attn.err.layer": "这个模型的层编号是 1 到 {n}；收到的是 {layer}。",
    "attn.err.head": "这个模型每层的头编号是 1 到 {n}；收到的是 {head}。",

    # -- runs --------------------------------------------------------------------------------------------------
    "runs.explainer": "**这里在做什么。** 每个训练任务都是一个*运行目录*：它的设置（`config.json`）、分词器、"
                      "每个记录步的损失日志（`metrics.jsonl`）、训练中写出的文本（`samples.jsonl`）、你的 👍 / 👎 "
                      "评价，以及检查点（`best`——验证损失最低的那个——和 `last`）。选几个运行，就能把它们的损失曲线叠在"
                      "一起比较。*验证*损失越低越好，但只有在**分词器相同**的运行之间才可比：损失是按词元计算的，而不同"
                      "分词器的词元不一样。要比较分词器不同的运行，请切换到**每字符比特数**（`val_bpc`，每次评估时测得）。",
    "runs.table": "你的运行和共享示例", "runs.refresh": "刷新",
    "runs.col.title": "名称", "runs.col.state": "状态", "runs.col.steps": "步数",
    "runs.col.best_val": "最佳验证损失", "runs.col.best_bpc": "最佳验证每字符比特数", "runs.col.model": "模型",
    "runs.col.tokenizer": "分词器", "runs.col.data": "数据", "runs.col.created": "创建时间",
    "runs.col.up": "👍", "runs.col.down": "👎", "runs.col.id": "运行 ID",
    "runs.example": "（示例）",
    "runs.model_size": "{layers} 层 · 宽 {width} · {params} 参数",
    "runs.state.created": "就绪", "runs.state.queued": "排队中", "runs.state.running": "训练中",
    "runs.state.stopped": "已停止", "runs.state.completed": "已完成", "runs.state.failed": "失败",
    "runs.state.unknown": "未知",
    "runs.compare": "比较运行", "runs.compare_pick": "要叠加的运行",
    "runs.log_scale": "对数坐标", "runs.bpc": "每字符比特数（不同分词器之间也公平）",
    "runs.plot": "损失曲线", "runs.axis.step": "步数", "runs.axis.loss": "损失（每词元奈特）",
    "runs.axis.bpc": "每字符比特数", "runs.trace.train": "训练", "runs.trace.val": "验证",
    "runs.plot.empty": "在上面选一个或多个运行，叠加它们的曲线。",
    "runs.plot.no_metrics": "所选的运行还没有记录任何数据。",
    "runs.actions": "使用、下载或删除一个运行", "runs.pick": "运行",
    "runs.pick_info": "也可以点击表格中的一行。",
    "runs.load": "在“生成”和“注意力”中使用",
    "runs.loaded": "已加载 **{title}**：打开“生成”或“注意力”页来试试它。",
    "runs.which": "检查点", "runs.which_info": "best = 验证损失最低的；last = 最新的",
    "runs.download_ckpt": "下载检查点（.zip）",
    "runs.download_hf": "下载 Hugging Face transformers 格式（.zip）",
    "runs.file": "下载",
    "runs.delete": "删除…",
    "runs.confirm_delete": "确定要删除 **{title}** 吗？它的检查点、日志和样本都会被删除，且无法恢复。",
    "runs.confirm_yes": "是的，删除", "runs.cancel": "取消",
    "runs.deleted": "已删除 **{title}**。",
    "runs.confirm_first": "要删除一个运行，请先按“删除…”，再按“是的，删除”确认。",
    "runs.no_pick": "请先选择一个运行（在列表中选，或点击表格中的一行）。",
    "runs.too_many": "一次最多比较 {n} 个运行。",
    "runs.no_checkpoint": "{title} 还没有检查点：先训练它，再下载。",
    "runs.no_hf": "此版本的 Newleaf 不支持导出为 Hugging Face 格式。",
    "runs.upload": "上传一个运行（从本页下载的 .zip）：它会成为你的运行之一",
    "runs.upload_none": "请先选择一个运行的 .zip 文件。",
    "runs.upload_too_big": "该文件超过了 {mb} MB 的上传上限。",
    "runs.uploaded": "已上传 **{title}**：它现在是你的运行之一；可以在“生成”和“注意力”中使用。",

    # -- finetune ----------------------------------------------------------------------------------------------
    "ft.explainer": "**这里在做什么。** *微调*从一个已经学到了一些东西的模型（你的某个运行，或 GPT-2）出发，在新数据上"
                    "再训练一小会儿，并使用较低的学习率，让它保留原来学会的东西。对于*对话*数据，每个样例都用对话标记"
                    "（`<|user|>…<|end|><|assistant|>…<|end|>`）写出，损失**只计算助手的词元**：模型要学会的是*回答*，"
                    "而不是写出问题。训练前先在从未训练过的留出样例上测一次基础模型，训练后再测一次结果。**全量**微调"
                    "更新所有权重（可以冻结前几层）。**LoRA** 冻结所有权重，只在大矩阵旁学习一个小小的低秩更新 "
                    "W + (α / r)·B·A：可训练的参数少得多，基础模型也保持原样。实话实说：LoRA 擅长调整模型如何运用它"
                    "已有的知识；而让一个很小的模型用 LoRA 学会算术这样的全新技能会很慢，所以演示请用全量微调。演示"
                    "会问“What is 37 + 45?”这样的加法题，并按留出问题的答案是否完全正确来打分。",
    "ft.base.title": "#### 基础模型：权重从哪里开始",
    "ft.base.kind": "起点",
    "ft.base.run": "你的运行（或共享示例）",
    "ft.base.hub": "Hugging Face Hub 上的 GPT-2 模型",
    "ft.base.hub.info": "只下载一次（第一次需要联网），之后从缓存读取",
    "ft.base.folder": "本地的 Hugging Face GPT-2 模型文件夹",
    "ft.base.folder.placeholder": "/path/to/含有 config.json 和 model.safetensors 的文件夹",
    "ft.base.preset": "新模型的大小",
    "ft.base.preset.info": "从零开始的模型什么都还不懂：用于算术演示已经足够",
    "ft.data.title": "#### 数据",
    "ft.data.source": "微调数据",
    "ft.data.upload": "或上传文件：.jsonl 对话或指令数据，含 prompt 和 response 列（或一个文本列）的 .csv，"
                      ".txt / .md 纯文本",
    "ft.data.prompt_column": "CSV 提示列", "ft.data.response_column": "CSV 回复列",
    "ft.data.column.info": "留空：按列名自动识别（prompt/response、instruction/output、question/answer……）",
    "ft.data.too_long": "超出上下文长度的样例",
    "ft.data.check": "检查数据",
    "ft.data.none": "按**检查数据**看看数据是如何被理解的，或者直接按**开始**：算术演示已经准备好了。",
    "ft.check.chat": "✅ **{name}**：{n} 段对话。损失只计算助手的回复。",
    "ft.check.held_out": "其中 {n} 个是留出的问题，从不参与训练：它们用来打分。",
    "ft.check.text": "✅ **{name}**：纯文本，{chars} 个字符（{tokens} 个词元）。继续预训练：每个词元都计入损失。",
    "ft.check.fits": "每个样例都能放进 {block} 个词元的上下文。",
    "ft.check.later": "超出上下文的样例会在开始训练时统计（{why}）。",
    "ft.check.preview": "一个样例，模型看到的样子：",
    "ft.method.title": "#### 方法",
    "ft.method": "方法",
    "ft.freeze": "冻结前 N 层", "ft.freeze.info": "0 = 所有层都训练",
    "ft.lora_rank": "LoRA 秩 r", "ft.lora_alpha": "LoRA alpha α", "ft.lora_dropout": "LoRA dropout",
    "ft.lora_layers": "加适配器的层", "ft.lora_layers.info": "层编号，例如 0,1；留空 = 全部",
    "ft.params": "🧮 {total} 个参数中有 **{trainable}** 个参与训练（{fraction}）。",
    "ft.params.approx": "约数：新模型的词表来自数据。",
    "ft.params.unknown": "🧮 模型下载之后才能知道参数个数。",
    "ft.train.title": "#### 训练",
    "ft.lr.info": "默认值随方法而定：全量微调较低，LoRA 较高",
    "ft.no_job": "还没有微调任务。算术演示已经准备好了：按“开始”。",
    "ft.results.title": "#### 微调前后",
    "ft.results.waiting": "训练前会先测基础模型，训练后再测微调后的模型；数字会显示在这里。",
    "ft.result.em": "🎯 {n} 个留出问题的完全正确率：基础模型 **{before}** → 微调后 **{after}**",
    "ft.result.em_base": "🎯 基础模型在 {n} 个留出问题上的完全正确率：**{before}**。训练结束后再测微调后的模型。",
    "ft.result.loss": "验证损失（越低越好）：基础模型 **{before}** → 微调后 **{after}**",
    "ft.result.loss_base": "基础模型的验证损失：**{before}**。训练结束后再测微调后的模型。",
    "ft.results.table": "基础模型与微调后模型在验证样例上的对比",
    "ft.col.metric": "指标", "ft.col.base": "基础模型", "ft.col.finetuned": "微调后", "ft.col.prompt": "提示词",
    "ft.metric.val_loss": "验证损失", "ft.metric.perplexity": "困惑度",
    "ft.metric.exact_match": "完全正确率（%）", "ft.metric.bleu": "BLEU（0–100）", "ft.metric.rouge_l": "ROUGE-L（0–1）",
    "ft.metric.distinct_1": "Distinct-1", "ft.metric.distinct_2": "Distinct-2",
    "ft.compare.title": "#### 比较输出",
    "ft.compare.prompts": "提示词，每行一个",
    "ft.compare.placeholder": "What is 12 + 30?",
    "ft.compare.run": "比较基础模型与微调后模型",
    "ft.compare.table": "贪心解码的回复，并排显示",
    "ft.compare.none": "请至少输入一个提示词（每行一个）。",
    "ft.compare.no_run": "请先开始一次微调：比较的是它的基础模型和微调结果。",
    "ft.compare.no_checkpoint": "这个运行还没有检查点：先让它训练一会儿。",
    "ft.compare.not_finetune": "这个运行不是微调运行：没有可以对比的基础模型。",
    "ft.no_run": "没有可以停止的微调任务。",
    "ft.base.pick_run": "请选择你的一个运行作为基础模型（可在第 3 页训练一个），或选择其他类型的基础模型。",
    "ft.base.bad_hub": "“{name}”不是 Hugging Face Hub 的模型 ID（例如 gpt2、distilgpt2 或 owner/name）。",
    "ft.base.no_folder": "请输入一个含有 Hugging Face GPT-2 模型（config.json 和 model.safetensors）的文件夹路径。",
    "ft.base.folder_in_runs": "这个文件夹在运行目录里：要从你的某个运行开始，请选择“你的运行”。",
    "ft.base.folder_space": "在这台共享服务器上不能使用本地文件夹：请选择你的某个运行或 Hub 上的模型。",
    "ft.started": "正在微调 {total} 个参数中的 {trainable} 个（{fraction}），起点是 {base}。",
    "ft.title.placeholder": "例如 arithmetic-full",
    "ft.kind.scratch": "一个新的小模型（用于演示）", "ft.kind.run": "我的某个运行",
    "ft.kind.hub": "Hugging Face Hub 上的 GPT-2", "ft.kind.folder": "本地文件夹",
    "ft.method.full": "全量微调", "ft.method.lora": "LoRA",
    "ft.too_long.truncate": "截掉末尾", "ft.too_long.drop": "不使用它们",
    "ft.src.demo": "演示：{title}：{train} 道训练题和 {test} 道留出题，按完全正确率打分",
    "ft.src.text": "{title}（纯文本）",
    "ft.task.arithmetic": "两位数加法", "ft.task.arithmetic-small": "一位数加法",
    "ft.dataset.shakespeare": "Tiny Shakespeare", "ft.dataset.python-stdlib": "Python 标准库源码",
    "ft.data.csv_column": "CSV 文本列",
    "ft.data.csv_column.info": "用于纯文本：留空 = 名为 text 的列，或唯一的一列",
    "ft.data.no_files": "还没有上传文件：把 .jsonl、.csv、.txt 或 .md 文件拖到上传框里。",
    "ft.data.unknown": "未知的数据选项 {value}。",
    "ft.data.columns_clash": "请只填写提示列和回复列（对话数据）或文本列（纯文本）中的一种，不要同时填写。",
    "ft.check.context_unknown": "还不知道基础模型的上下文长度",
    "ft.check.no_hold_out": "只有 {n} 个样例：太少了，无法留出一部分，所以验证会重用训练样例。",
    "ft.params.approx_data": "约数：数据可能会给词表添加新词元（对话标记、新字符），它们的嵌入也会参与训练；"
                             "按“开始”之后会给出准确数字。",
    "ft.result.em_train": "🎯 {n} 个训练问题的完全正确率（样例太少，无法留出）：基础模型 **{before}** → 微调后 "
                          "**{after}**",
    "ft.result.em_base_train": "🎯 基础模型在 {n} 个训练问题上的完全正确率（样例太少，无法留出）：**{before}**。"
                               "训练结束后再测微调后的模型。",
    "ft.base.fresh_label": "一个新的 {preset} 模型",
    "ft.base.no_such_folder": "没有文件夹 {path}。",
    "ft.name.freeze": "冻结的层数", "ft.name.lora_rank": "LoRA 秩", "ft.name.lora_alpha": "LoRA alpha",
    "ft.name.lora_dropout": "LoRA dropout", "ft.name.max_time": "时间预算",
    "ft.err.layers": "加适配器的层是用逗号分隔的层编号，例如 0,1；收到的是 {value}。",
    "ft.err.preset": "新模型的大小请从 {sizes} 中选择；收到的是 {value}。",
    "ft.err.kind": "未知的基础模型类型 {value}；请从 {kinds} 中选择。",
    "ft.err.steps": "步数必须在 1 到 {max} 之间；收到的是 {steps}。",
}

STRINGS = {"en": EN, "zh": ZH}


def t(key: str, lang: str = "en", **fmt) -> str:
    """The text of `key` in `lang` (English when missing), with {placeholders} filled in."""
    text = STRINGS.get(lang, EN).get(key) or EN[key]
    return text.format(**fmt) if fmt else text


class Translator:
    """Builds components with English text and remembers which attribute shows which key, so that the
    language switch can send every component its new text in one event."""

    def __init__(self):
        self._bindings: list[tuple[gr.components.Component, dict]] = []
        self.hooks: list[tuple] = []  # (fn, inputs, outputs) run after a switch, to redraw live content

    def __call__(self, component_cls, **kwargs):
        """tr(gr.Button, value="train.start", variant="primary"): keyword values that are string keys of EN
        are translated; the rest pass through. `choices` may be a function of the language that returns
        (label, value) pairs: only the labels change with the language."""
        keys = {k: v for k, v in kwargs.items() if isinstance(v, str) and v in EN and k in
                ("label", "value", "info", "placeholder")}
        if callable(kwargs.get("choices")):
            keys["choices"] = kwargs["choices"]
        component = component_cls(**{**kwargs, **{k: _text(v, "en") for k, v in keys.items()}})
        self._bindings.append((component, keys))
        return component

    def bind(self, component, **keys):
        """Register an existing block (e.g. a gr.Tab) whose attributes show these keys."""
        self._bindings.append((component, keys))
        return component

    def on_switch(self, fn, inputs, outputs):
        """Run fn(*inputs) -> outputs after each language switch (it reads the new language from ctx.lang)."""
        self.hooks.append((fn, inputs, outputs))

    @property
    def components(self) -> list:
        return [c for c, _ in self._bindings]

    def updates(self, lang: str) -> list:
        # no `value` for choices: the selection stays as it is
        return [gr.update(**{attr: _text(key, lang) for attr, key in keys.items()}) for _, keys in self._bindings]


def _text(key, lang: str):
    return key(lang) if callable(key) else t(key, lang)
