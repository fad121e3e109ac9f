"""Random-weight GGUF pairs with the architecture of Phi-4-reasoning-vision-15B.

A pair is a text GGUF of arch ``phi3`` plus an mmproj GGUF of projector type ``phi4``: the same
graph llama.cpp builds for the real model (SigLIP ViT -> two-layer GELU projector -> phi3
decoder), only with small random weights. Tests load the tiny shape through llama-cpp-python to
exercise the real in-process path without the 9 GB download; ``TinyShape.phi4rv_15b()`` writes
the full-size shape for GPU benchmarks (never from tests: tens of GB).

The weights mean nothing, with one deliberate exception: the output head is biased against the
byte tokens 0x80-0xFF. A random model that samples them makes llama-cpp-python's multibyte
branch skip its ``max_tokens`` check, so generation can run past the limit. So channel 0 of
every token embedding (and of the projector's output bias, for image positions) is a constant
0.25 while every other weight is N(0, 0.02); the small random layers barely disturb it, so it
dominates the final RMS-normalised hidden state, and the rows of ``output.weight`` for those
bytes hold -8 in that channel. For the tiny shape their logits come out more than 20 below the
best one (the tests check it, with and without an image in the context), so they are never
sampled in practice. Nothing else about the output is steered: the model may emit the CONTROL
tokens, which detokenize to nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np

from deskpilot.models.phi4rv_template import TURNS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: template lines laid out like the real one
"""Bump when the files written for an unchanged shape change, so caches are rebuilt."""

WeightType = Literal["F32", "F16", "Q8_0"]
WEIGHT_TYPES: tuple[WeightType, ...] = ("F32", "F16", "Q8_0")
"""Supported storage types for weight matrices.

F32 and F16 are plain casts. Q8_0 uses the gguf package's own numpy quantizer (cheap enough:
tens of M values/s); a matrix whose row length is not a multiple of 32 (SigLIP's 4304) stays
F16, as llama.cpp's converter does. Whatever the choice, norms, biases and the vision position
table are F32 (clip.cpp's interpolation asserts F32), and the patch convolution is F16 unless
everything is F32.
"""

MODEL_FILENAME = "deskpilot-tiny-phi4rv.gguf"
MMPROJ_FILENAME = "deskpilot-tiny-phi4rv-mmproj.gguf"
MODEL_NAME = "deskpilot tiny random Phi-4-RV"

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_sep|>",
    "<think>",
    "</think>",
    "<|dummy_84|>",
)
BOS_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# A few merges in GPT-2 byte-to-unicode form ("Ġ" is the space byte). llama.cpp refuses a gpt2
# vocabulary without merges; each merged token is added to the vocabulary as a NORMAL token.
MERGES: tuple[tuple[str, str], ...] = (
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("o", "n"),
    ("Ġ", "c"),
    ("l", "i"),
    ("c", "k"),
)

SYSTEM_TEXT = (
    "You are a tiny model with random weights, written by deskpilot for tests; "
    "nothing you say means anything."
)

# The real model's template with a short system sentence: the same user and assistant
# turns (HF's {% generation %} tag around assistant text) after a fixed system turn.
CHAT_TEMPLATE = (
    "<|im_start|>system<|im_sep|>" + SYSTEM_TEXT + "<|im_end|>\n" + TURNS
)

_BASE_VOCAB = 256 + len(MERGES) + len(SPECIAL_TOKENS)
_WEIGHT_STD = 0.02
_BIAS_CHANNEL_VALUE = 0.25
_BAD_BYTE_WEIGHT = -8.0
_RMS_EPS = 1e-5
_VISION_LN_EPS = 1e-6
_POOL_ROWS = 1024  # distinct random rows per tensor; taller tensors repeat them
_Q8_0_BLOCK = 32


@dataclass(frozen=True)
class TinyShape:
    """Dimensions and weight type of a random Phi-4-RV-shaped GGUF pair."""

    text_embd: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_ff: int = 128
    text_ctx: int = 8192
    vocab_size: int = 512
    rope_freq_base: float = 500000.0
    vision_embd: int = 32
    vision_layers: int = 1
    vision_heads: int = 2
    vision_ff: int = 64
    image_size: int = 256
    patch_size: int = 16
    min_patches: int = 256
    max_patches: int = 3600
    weight_type: WeightType = "F32"

    def __post_init__(self) -> None:
        """Reject shapes llama.cpp could not load, with a message naming the field."""
        self._check_types()
        self._check_dims()

    def _check_types(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "weight_type":
                if value not in WEIGHT_TYPES:
                    raise ValueError(
                        f"TinyShape.weight_type must be one of {', '.join(WEIGHT_TYPES)}, "
                        f"got {value!r}"
                    )
                continue
            expected: tuple[type, ...] = (int, float) if field.name == "rope_freq_base" else (int,)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ValueError(f"TinyShape.{field.name} must be an integer, got {value!r}")
            if value <= 0:  # type: ignore[operator]  # an int or float, checked just above
                raise ValueError(f"TinyShape.{field.name} must be positive, got {value}")

    def _check_dims(self) -> None:
        head = self.text_embd // self.text_heads
        checks = [
            (
                self.text_embd % self.text_heads != 0,
                f"text_embd {self.text_embd} is not divisible by text_heads {self.text_heads}",
            ),
            (
                self.text_heads % self.text_kv_heads != 0,
                f"text_heads {self.text_heads} is not divisible by "
                f"text_kv_heads {self.text_kv_heads}",
            ),
            (head % 2 != 0, f"the text head size {head} must be even for RoPE"),
            (
                self.vision_embd % self.vision_heads != 0,
                f"vision_embd {self.vision_embd} is not divisible by "
                f"vision_heads {self.vision_heads}",
            ),
            (
                self.image_size % self.patch_size != 0,
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}",
            ),
            (
                self.min_patches > self.max_patches,
                f"min_patches {self.min_patches} exceeds max_patches {self.max_patches}",
            ),
            (
                self.text_ctx <= self.max_patches,
                f"text_ctx {self.text_ctx} must exceed max_patches {self.max_patches} "
                "so that one full-size image fits in the context",
            ),
            (
                self.vocab_size < _BASE_VOCAB,
                f"vocab_size {self.vocab_size} is below the {_BASE_VOCAB} tokens the "
                "tokenizer needs (256 bytes, merges and specials)",
            ),
        ]
        messages = [message for failed, message in checks if failed]
        if messages:
            raise ValueError("invalid TinyShape: " + "; ".join(messages))

    @classmethod
    def tiny(cls) -> TinyShape:
        """The default test shape: under 1 MB for both files, fast on two CPU cores."""
        return cls()

    @classmethod
    def phi4rv_15b(cls, weight_type: WeightType = "F16") -> TinyShape:
        """The real model's shape: about 15B parameters, ~16 GB on disk at Q8_0, ~30 GB at F16.

        Dimensions from the model's config (hidden 5120, 40 layers, 40 heads with 10 KV heads,
        ff 17920, vocab 100352, rope theta 500000, 32768 positions) and SigLIP-2 so400m
        patch16 (1152 wide, ff 4304, 16 heads, 27 blocks exported as 26, 16x16 position grid).
        For GPU benchmarks only; tests never write it.
        """
        return cls(
            text_embd=5120,
            text_layers=40,
            text_heads=40,
            text_kv_heads=10,
            text_ff=17920,
            text_ctx=32768,
            vocab_size=100352,
            rope_freq_base=500000.0,
            vision_embd=1152,
            vision_layers=26,
            vision_heads=16,
            vision_ff=4304,
            image_size=256,
            patch_size=16,
            min_patches=256,
            max_patches=3600,
            weight_type=weight_type,
        )

    @classmethod
    def from_overrides(cls, base: TinyShape, **dims: Any) -> TinyShape:
        """Copy ``base`` with some fields replaced, e.g. from CLI flags; None values are kept."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(dims) - names)
        if unknown:
            known = ", ".join(sorted(names))
            raise ValueError(f"unknown TinyShape field(s): {', '.join(unknown)}; known: {known}")
        return dataclasses.replace(base, **{k: v for k, v in dims.items() if v is not None})

    @property
    def text_head_dim(self) -> int:
        """Size of one text attention head (also the RoPE dimension count)."""
        return self.text_embd // self.text_heads

    @property
    def text_qkv_rows(self) -> int:
        """Output width of the fused QKV projection (queries plus grouped keys and values)."""
        return self.text_embd + 2 * self.text_kv_heads * self.text_head_dim

    @property
    def position_grid(self) -> int:
        """Side of the square position-embedding grid that clip.cpp interpolates."""
        return self.image_size // self.patch_size

    def cache_key(self, seed: int) -> str:
        """A short stable hash of this shape, the seed and the file format version."""
        payload = json.dumps(
            {"shape": dataclasses.asdict(self), "seed": seed, "format": FORMAT_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


DEFAULT_TINY_SHAPE = TinyShape.tiny()


@dataclass(frozen=True)
class TinyPair:
    """Paths of a written text GGUF and its mmproj."""

    model: Path
    mmproj: Path


def write_tiny_pair(
    directory: Path, shape: TinyShape = DEFAULT_TINY_SHAPE, *, seed: int = 0
) -> TinyPair:
    """Write a random-weight text GGUF and mmproj GGUF into ``directory`` (created if needed).

    Each file is written under a temporary name and renamed into place, so readers never see
    a partial file. Tensors are generated and written one at a time, so peak memory is about
    one tensor in its stored type (about 1 GB for the 15B shape's F16 embedding table).
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pair = TinyPair(model=directory / MODEL_FILENAME, mmproj=directory / MMPROJ_FILENAME)
    _write_gguf(
        pair.model,
        arch="phi3",
        shape=shape,
        add_metadata=_text_metadata,
        specs=_text_tensors(shape),
        rng=rng,
    )
    _write_gguf(
        pair.mmproj,
        arch="clip",
        shape=shape,
        add_metadata=_mmproj_metadata,
        specs=_mmproj_tensors(shape),
        rng=rng,
    )
    logger.info(
        "wrote tiny pair: %s (%d bytes), %s (%d bytes)",
        pair.model,
        pair.model.stat().st_size,
        pair.mmproj,
        pair.mmproj.stat().st_size,
    )
    return pair


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/deskpilot/tiny``, or ``~/.cache/deskpilot/tiny``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deskpilot" / "tiny"


def ensure_tiny_pair(
    cache_dir: Path | None = None, shape: TinyShape = DEFAULT_TINY_SHAPE, *, seed: int = 0
) -> TinyPair:
    """Return the cached pair for this shape and seed, writing it on first use."""
    directory = (cache_dir or default_cache_dir()) / shape.cache_key(seed)
    pair = TinyPair(model=directory / MODEL_FILENAME, mmproj=directory / MMPROJ_FILENAME)
    if pair.model.is_file() and pair.mmproj.is_file():
        return pair
    logger.info("writing tiny model pair into %s", directory)
    write_tiny_pair(directory, shape, seed=seed)
    info = directory / "shape.json"
    tmp = info.with_name(f".{info.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps({"seed": seed, "format": FORMAT_VERSION, **dataclasses.asdict(shape)}, indent=2)
    )
    tmp.replace(info)
    return pair


# --- tokenizer ---------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _vocabulary(vocab_size: int) -> tuple[list[str], list[int]]:
    """Token texts and types: bytes, merged tokens, specials, then NORMAL padding."""
    byte_map = _bytes_to_unicode()
    tokens = [byte_map[b] for b in range(256)]
    types = [gguf.TokenType.NORMAL] * 256
    for left, right in MERGES:
        tokens.append(left + right)
        types.append(gguf.TokenType.NORMAL)
    for special in SPECIAL_TOKENS:
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
    # Padding must be NORMAL: CONTROL tokens detokenize to nothing, so a random model that
    # samples them would return empty text.
    for i in range(vocab_size - len(tokens)):
        tokens.append(f"pad{i}")
        types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def special_token_ids() -> dict[str, int]:
    """Token ids of the special tokens in a tiny vocabulary (same for every shape)."""
    first = 256 + len(MERGES)
    return {text: first + i for i, text in enumerate(SPECIAL_TOKENS)}


# --- metadata ----------------------------------------------------------------------------


_FILE_TYPES: dict[str, int] = {
    "F32": int(gguf.LlamaFileType.ALL_F32),
    "F16": int(gguf.LlamaFileType.MOSTLY_F16),
    "Q8_0": int(gguf.LlamaFileType.MOSTLY_Q8_0),
}


def _common_metadata(writer: gguf.GGUFWriter, shape: TinyShape, what: str) -> None:
    writer.add_name(MODEL_NAME)
    writer.add_description(
        f"{what} of a random-weight model with the Phi-4-reasoning-vision-15B architecture, "
        "written by deskpilot for tests and benchmarks. It is not the real model."
    )
    writer.add_file_type(_FILE_TYPES[shape.weight_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _text_metadata(writer: gguf.GGUFWriter, shape: TinyShape) -> None:
    _common_metadata(writer, shape, "Text model")
    writer.add_context_length(shape.text_ctx)
    writer.add_embedding_length(shape.text_embd)
    writer.add_block_count(shape.text_layers)
    writer.add_feed_forward_length(shape.text_ff)
    writer.add_head_count(shape.text_heads)
    writer.add_head_count_kv(shape.text_kv_heads)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_rope_dimension_count(shape.text_head_dim)
    writer.add_rope_freq_base(shape.rope_freq_base)
    writer.add_sliding_window(0)  # what the converter writes for Phi-4 (no SWA)

    tokens, types = _vocabulary(shape.vocab_size)
    ids = special_token_ids()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("dbrx")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{left} {right}" for left, right in MERGES])
    writer.add_bos_token_id(ids[BOS_TOKEN])
    writer.add_eos_token_id(ids[EOS_TOKEN])
    writer.add_pad_token_id(ids[PAD_TOKEN])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def _mmproj_metadata(writer: gguf.GGUFWriter, shape: TinyShape) -> None:
    _common_metadata(writer, shape, "Vision projector")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(gguf.VisionProjectorType.PHI4)
    writer.add_vision_projection_dim(shape.text_embd)
    writer.add_vision_image_size(shape.image_size)
    writer.add_vision_patch_size(shape.patch_size)
    writer.add_vision_embedding_length(shape.vision_embd)
    writer.add_vision_feed_forward_length(shape.vision_ff)
    writer.add_vision_block_count(shape.vision_layers)
    writer.add_vision_head_count(shape.vision_heads)
    writer.add_vision_attention_layernorm_eps(_VISION_LN_EPS)
    writer.add_vision_image_mean([0.5, 0.5, 0.5])
    writer.add_vision_image_std([0.5, 0.5, 0.5])
    writer.add_vision_min_pixels(shape.min_patches * shape.patch_size**2)
    writer.add_vision_max_pixels(shape.max_patches * shape.patch_size**2)
    writer.add_vision_use_gelu(True)


# --- tensors -----------------------------------------------------------------------------

_Kind = Literal["matrix", "norm", "bias", "conv", "table"]


@dataclass(frozen=True)
class _Fix:
    """Set one column to a constant, in every row or only in rows ``[rows[0], rows[1])``."""

    column: int
    value: float
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class _TensorSpec:
    """One tensor to write: numpy-order shape, what it is, and the fixed values it carries."""

    name: str
    shape: tuple[int, ...]
    kind: _Kind
    fixes: tuple[_Fix, ...] = ()


# Channel 0 of every token embedding and of the projector output is a constant (see the
# module docstring); the output rows of bytes 0x80-0xFF weigh it strongly negative.
_BIAS_CHANNEL = _Fix(column=0, value=_BIAS_CHANNEL_VALUE)
_SUPPRESS_HIGH_BYTES = _Fix(column=0, value=_BAD_BYTE_WEIGHT, rows=(0x80, 0x100))


def _text_tensors(shape: TinyShape) -> list[_TensorSpec]:
    d, ff, vocab = shape.text_embd, shape.text_ff, shape.vocab_size
    specs = [_TensorSpec("token_embd.weight", (vocab, d), "matrix", (_BIAS_CHANNEL,))]
    for i in range(shape.text_layers):
        specs += [
            _TensorSpec(f"blk.{i}.attn_norm.weight", (d,), "norm"),
            _TensorSpec(f"blk.{i}.attn_qkv.weight", (shape.text_qkv_rows, d), "matrix"),
            _TensorSpec(f"blk.{i}.attn_output.weight", (d, d), "matrix"),
            _TensorSpec(f"blk.{i}.ffn_norm.weight", (d,), "norm"),
            _TensorSpec(f"blk.{i}.ffn_up.weight", (2 * ff, d), "matrix"),  # gate and up fused
            _TensorSpec(f"blk.{i}.ffn_down.weight", (d, ff), "matrix"),
        ]
    specs += [
        _TensorSpec("output_norm.weight", (d,), "norm"),
        _TensorSpec("output.weight", (vocab, d), "matrix", (_SUPPRESS_HIGH_BYTES,)),
    ]
    return specs


def _mmproj_tensors(shape: TinyShape) -> list[_TensorSpec]:
    e, ff, d, p = shape.vision_embd, shape.vision_ff, shape.text_embd, shape.patch_size
    specs = [
        _TensorSpec("v.patch_embd.weight", (e, 3, p, p), "conv"),
        _TensorSpec("v.patch_embd.bias", (e,), "bias"),
        _TensorSpec("v.position_embd.weight", (shape.position_grid**2, e), "table"),
    ]
    for i in range(shape.vision_layers):
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            specs += [
                _TensorSpec(f"v.blk.{i}.{proj}.weight", (e, e), "matrix"),
                _TensorSpec(f"v.blk.{i}.{proj}.bias", (e,), "bias"),
            ]
        specs += [
            _TensorSpec(f"v.blk.{i}.ln1.weight", (e,), "norm"),
            _TensorSpec(f"v.blk.{i}.ln1.bias", (e,), "bias"),
            _TensorSpec(f"v.blk.{i}.ln2.weight", (e,), "norm"),
            _TensorSpec(f"v.blk.{i}.ln2.bias", (e,), "bias"),
            _TensorSpec(f"v.blk.{i}.ffn_up.weight", (ff, e), "matrix"),
            _TensorSpec(f"v.blk.{i}.ffn_up.bias", (ff,), "bias"),
            _TensorSpec(f"v.blk.{i}.ffn_down.weight", (e, ff), "matrix"),
            _TensorSpec(f"v.blk.{i}.ffn_down.bias", (e,), "bias"),
        ]
    specs += [
        _TensorSpec("mm.0.weight", (d, e), "matrix"),
        _TensorSpec("mm.0.bias", (d,), "bias"),
        _TensorSpec("mm.2.weight", (d, d), "matrix"),
        _TensorSpec("mm.2.bias", (d,), "bias", (_BIAS_CHANNEL,)),
    ]
    return specs


def _storage_type(spec: _TensorSpec, weight_type: WeightType) -> gguf.GGMLQuantizationType:
    """How a tensor is stored: 1-D tensors and the position table stay F32."""
    f32, f16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    # clip.cpp interpolates the position table with ggml_interpolate, which asserts F32.
    if spec.kind in ("norm", "bias", "table") or weight_type == "F32":
        return f32
    if spec.kind == "conv" or weight_type == "F16":
        return f16
    # Q8_0 packs blocks of 32 along a row; other row lengths (e.g. SigLIP's 4304) stay F16,
    # as llama.cpp's converter does.
    return gguf.GGMLQuantizationType.Q8_0 if spec.shape[-1] % _Q8_0_BLOCK == 0 else f16


def _encode(rows: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """Convert float32 rows to the stored type (quantized types come back as bytes per row)."""
    if qtype == gguf.GGMLQuantizationType.F32:
        return rows
    if qtype == gguf.GGMLQuantizationType.F16:
        return rows.astype(np.float16)
    return gguf.quants.quantize(rows, qtype)


def _make_tensor(
    spec: _TensorSpec, qtype: gguf.GGMLQuantizationType, rng: np.random.Generator
) -> np.ndarray:
    """Generate one tensor directly in its stored type.

    At most ``_POOL_ROWS`` distinct random rows are drawn and encoded; taller tensors repeat
    them. Every tensor of the tiny shape is fully random; for the 15B shape this keeps
    writing fast (numpy's normal sampler and Q8_0 packer run at tens of M values/s), and the
    compute cost of the model does not depend on the values.
    """
    if spec.kind in ("norm", "bias"):
        values = np.full(spec.shape, 1.0 if spec.kind == "norm" else 0.0, dtype=np.float32)
        for fix in spec.fixes:
            values[fix.column] = fix.value
        return values
    n_rows, n_cols = spec.shape[0], int(np.prod(spec.shape[1:]))
    pool_rows = min(n_rows, _POOL_ROWS)
    pool = rng.standard_normal((pool_rows, n_cols), dtype=np.float32)
    pool *= _WEIGHT_STD
    for fix in spec.fixes:
        if fix.rows is None:
            pool[:, fix.column] = fix.value
    encoded = _encode(pool, qtype)
    if pool_rows == n_rows:
        out = encoded.copy() if encoded is pool else encoded
    else:
        out = np.empty((n_rows, encoded.shape[1]), dtype=encoded.dtype)
        for start in range(0, n_rows, pool_rows):
            stop = min(n_rows, start + pool_rows)
            out[start:stop] = encoded[: stop - start]
    for fix in spec.fixes:
        if fix.rows is None:
            continue
        lo, hi = fix.rows[0], min(fix.rows[1], n_rows)
        if lo < hi:
            rows = pool[np.arange(lo, hi) % pool_rows]  # fancy indexing copies
            rows[:, fix.column] = fix.value
            out[lo:hi] = _encode(rows, qtype)
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        return out
    return out.reshape(spec.shape)


def _storage_info(
    shape: Sequence[int], qtype: gguf.GGMLQuantizationType
) -> tuple[tuple[int, ...], np.dtype[Any], int, gguf.GGMLQuantizationType | None]:
    """Shape, numpy dtype, byte count and raw type that ``add_tensor_info`` expects."""
    if qtype == gguf.GGMLQuantizationType.F32:
        return tuple(shape), np.dtype(np.float32), int(np.prod(shape)) * 4, None
    if qtype == gguf.GGMLQuantizationType.F16:
        return tuple(shape), np.dtype(np.float16), int(np.prod(shape)) * 2, None
    byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
    return tuple(byte_shape), np.dtype(np.uint8), int(np.prod(byte_shape)), qtype


def _write_gguf(
    path: Path,
    *,
    arch: str,
    shape: TinyShape,
    add_metadata: Callable[[gguf.GGUFWriter, TinyShape], None],
    specs: list[_TensorSpec],
    rng: np.random.Generator,
) -> None:
    """Stream one GGUF file: header, metadata and tensor index first, then tensor by tensor."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        add_metadata(writer, shape)
        plan = [(spec, _storage_type(spec, shape.weight_type)) for spec in specs]
        for spec, qtype in plan:
            stored_shape, dtype, nbytes, raw = _storage_info(spec.shape, qtype)
            writer.add_tensor_info(spec.name, stored_shape, dtype, nbytes, raw_dtype=raw)
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for spec, qtype in plan:
            writer.write_tensor_data(_make_tensor(spec, qtype, rng))
        writer.close()
        tmp.replace(path)  # atomic rename within one directory
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
