"""Shared fixtures: tiny randomly initialised models with tokenizers built in the test session.

Everything here is offline and fast. Tests that need the real SmolLM2 / Gemma weights are marked
``real_model``; tests that read ``../shared/data`` are marked ``shared_data`` and skip when it
is absent.

The precision the suite runs in is what ``--dtype auto`` resolves to on the device ``--device
auto`` resolves to (where code under test loads models with ``device="auto"``): bf16 on a CPU
with fast bf16 or a CUDA card of capability 8.0 or newer, else fp32. ``RLPROMPT_DTYPE=fp32`` or
``=bf16`` forces it for the tiny models built here and for every model the code under test
loads, so any machine can run both passes; ``RLPROMPT_DEVICE`` picks the device (``make
test-gpu`` runs the suite on the GPU). Tolerances follow that dtype and device (:class:`Tolerance`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rlprompt.devices import dtype_name, resolve_device, resolve_dtype  # noqa: E402
from rlprompt.models import LoadedModel  # noqa: E402
from rlprompt.tasks import DEMO_DIR  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
TEST_DEVICE = resolve_device("auto")
"""Where ``device="auto"`` (every default) runs models in this test run."""
TEST_DTYPE = resolve_dtype("auto", TEST_DEVICE)
"""The dtype of this test run (see the module docstring)."""


def pytest_report_header(config) -> str:
    forced = os.environ.get("RLPROMPT_DTYPE")
    return (
        f"rlprompt: models in {dtype_name(TEST_DTYPE)} ({'RLPROMPT_DTYPE=' + forced if forced else 'auto on this machine'}), "
        f"device auto = {TEST_DEVICE}"
    )


def available_devices() -> list[str]:
    """The CPU and every accelerator torch sees here."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


@pytest.fixture(params=["cuda", "mps"])
def accelerator(request) -> str:
    """Each accelerator kind; a test using it skips, with the reason, where there is none."""
    present = [d for d in available_devices() if d.startswith(request.param)]
    if not present:
        pytest.skip(f"no {request.param} device on this machine")
    return present[0]


class Tolerance:
    """How close one quantity computed two ways (with or without the prefix cache, batched or
    alone, by the library or by a direct model call) must be in this run's dtype.

    fp32 paths agree to float rounding. bf16 keeps 8 mantissa bits, so each path rounds its
    activations differently: about 1.6% relative (torch's own bf16 default), plus an absolute
    slack for the near-zero logits of the tiny random models. On an accelerator fp32 gets the
    slack of other kernels (fused attention, another summation order) against the CPU fixtures.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device | None = None) -> None:
        bf16 = dtype == torch.bfloat16
        accelerated = device is not None and device.type != "cpu"
        fp32_logits = dict(atol=1e-3, rtol=1e-3) if accelerated else dict(atol=1e-4, rtol=0.0)
        self.logits = dict(atol=2e-3, rtol=1.6e-2) if bf16 else fp32_logits
        """Keyword arguments for ``torch.testing.assert_close`` on class logits."""
        self.reward = 2e-2 if bf16 else (1e-2 if accelerated else 1e-3)
        """Absolute tolerance of a gap reward (200 x a probability gap)."""
        self.log_likelihood = 5e-3 if bf16 else (1e-4 if accelerated else 1e-5)
        """Absolute tolerance of a mean token log-likelihood."""


@pytest.fixture(scope="session")
def tol() -> Tolerance:
    return Tolerance(TEST_DTYPE, TEST_DEVICE)


def _corpus() -> list[str]:
    lines = []
    for split in ("train", "dev", "test"):
        text = (DEMO_DIR / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        lines += [line.split("\t")[0] for line in text]
    # Make the verbalizers and the manual prompt single tokens of the tiny vocabulary.
    return lines + ["It was great. It was terrible. It was good. It was bad. Overall it was okay."] * 50


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (GPT-2 style: ' great' is one token 'Ġgreat')."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    raw = ByteLevelBPETokenizer()
    raw.train_from_iterator(_corpus(), vocab_size=600, min_frequency=2, special_tokens=SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>"
    )


@pytest.fixture(scope="session")
def wordpiece_tokenizer():
    """A BERT-style WordPiece tokenizer that wraps inputs in [CLS] ... [SEP]."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import BertProcessing
    from transformers import PreTrainedTokenizerFast

    raw = BertWordPieceTokenizer(lowercase=True)
    raw.train_from_iterator(_corpus(), vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    raw._tokenizer.post_processor = BertProcessing(("[SEP]", raw.token_to_id("[SEP]")), ("[CLS]", raw.token_to_id("[CLS]")))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw._tokenizer, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]"
    )


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model.to(TEST_DTYPE)


@pytest.fixture(scope="session")
def tiny_llama(bpe_tokenizer) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(bpe_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=bpe_tokenizer.bos_token_id, eos_token_id=bpe_tokenizer.eos_token_id, pad_token_id=bpe_tokenizer.pad_token_id,
    )
    return LoadedModel("tiny-llama", _frozen(LlamaForCausalLM(config)), bpe_tokenizer, "causal")


@pytest.fixture(scope="session")
def tiny_gpt2(bpe_tokenizer) -> LoadedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    config = GPT2Config(
        vocab_size=len(bpe_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
        bos_token_id=bpe_tokenizer.bos_token_id, eos_token_id=bpe_tokenizer.eos_token_id,
    )
    return LoadedModel("tiny-gpt2", _frozen(GPT2LMHeadModel(config)), bpe_tokenizer, "causal")


@pytest.fixture(scope="session")
def tiny_bert(wordpiece_tokenizer) -> LoadedModel:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(2)
    config = BertConfig(
        vocab_size=len(wordpiece_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, pad_token_id=wordpiece_tokenizer.pad_token_id,
    )
    return LoadedModel("tiny-bert", _frozen(BertForMaskedLM(config)), wordpiece_tokenizer, "masked")


def _saved(lm: LoadedModel, factory: pytest.TempPathFactory) -> Path:
    folder = factory.mktemp(lm.name)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama saved as a Hugging Face folder, loadable by ``rlprompt --target-lm``."""
    return _saved(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tiny_gpt2, tmp_path_factory) -> Path:
    """The tiny GPT-2 saved as a Hugging Face folder: a second model for transfer tests."""
    return _saved(tiny_gpt2, tmp_path_factory)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (only on developer machines and CI)")
    return SHARED_DATA
