"""Tests for the random-weight Phi-4-RV GGUF pair writer."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from deskpilot.models.tiny import (
    CHAT_TEMPLATE,
    EOS_TOKEN,
    MODEL_NAME,
    SPECIAL_TOKENS,
    TinyPair,
    TinyShape,
    ensure_tiny_pair,
    special_token_ids,
    write_tiny_pair,
)

MB = 1024 * 1024


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> TinyPair:
    """One default tiny pair shared by the read-back tests."""
    return write_tiny_pair(tmp_path_factory.mktemp("tiny"))


def _value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, f"missing key {key}"
    return field.contents()


def _tensors(reader: gguf.GGUFReader) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in reader.tensors}


def test_pair_is_small(pair: TinyPair) -> None:
    assert pair.model.name.endswith(".gguf")
    assert "mmproj" in pair.mmproj.name
    assert pair.model.stat().st_size + pair.mmproj.stat().st_size < 2 * MB
    assert not list(pair.model.parent.glob("*.tmp"))


def test_text_metadata(pair: TinyPair) -> None:
    shape = TinyShape.tiny()
    reader = gguf.GGUFReader(pair.model)
    assert _value(reader, "general.architecture") == "phi3"
    assert _value(reader, "general.name") == MODEL_NAME
    assert _value(reader, "phi3.embedding_length") == shape.text_embd
    assert _value(reader, "phi3.block_count") == shape.text_layers
    assert _value(reader, "phi3.attention.head_count") == shape.text_heads
    assert _value(reader, "phi3.attention.head_count_kv") == shape.text_kv_heads
    assert _value(reader, "phi3.rope.dimension_count") == shape.text_head_dim
    assert _value(reader, "phi3.context_length") >= 8192
    assert _value(reader, "tokenizer.ggml.model") == "gpt2"
    assert _value(reader, "tokenizer.ggml.add_bos_token") is False
    assert len(_value(reader, "tokenizer.ggml.merges")) >= 1
    ids = special_token_ids()
    assert _value(reader, "tokenizer.ggml.eos_token_id") == ids[EOS_TOKEN] == ids["<|im_end|>"]
    assert _value(reader, "tokenizer.chat_template") == CHAT_TEMPLATE


def test_tokenizer_types(pair: TinyPair) -> None:
    reader = gguf.GGUFReader(pair.model)
    tokens = _value(reader, "tokenizer.ggml.tokens")
    types = _value(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == TinyShape.tiny().vocab_size
    by_text = dict(zip(tokens, types, strict=True))
    for special in SPECIAL_TOKENS:
        assert by_text[special] == gguf.TokenType.CONTROL, special
    for special, token_id in special_token_ids().items():
        assert tokens[token_id] == special
    assert tokens[ord("a")] == "a"
    assert tokens[ord(" ")] == "Ġ"  # GPT-2 byte-to-unicode form
    normal = [t for t, kind in by_text.items() if kind == gguf.TokenType.NORMAL]
    assert len(normal) == len(tokens) - len(SPECIAL_TOKENS)  # padding is NORMAL too


def test_text_tensors(pair: TinyPair) -> None:
    shape = TinyShape.tiny()
    tensors = _tensors(gguf.GGUFReader(pair.model))
    d = shape.text_embd
    # GGUF stores shapes in ggml order (innermost dimension first).
    assert list(tensors["token_embd.weight"].shape) == [d, shape.vocab_size]
    assert list(tensors["blk.0.attn_qkv.weight"].shape) == [d, shape.text_qkv_rows]
    assert list(tensors["blk.1.ffn_up.weight"].shape) == [d, 2 * shape.text_ff]
    assert list(tensors["blk.1.ffn_down.weight"].shape) == [shape.text_ff, d]
    assert np.all(tensors["output_norm.weight"].data == 1.0)


def test_output_head_disfavours_high_bytes(pair: TinyPair) -> None:
    tensors = _tensors(gguf.GGUFReader(pair.model))
    output = np.asarray(tensors["output.weight"].data).reshape(-1, TinyShape.tiny().text_embd)
    embd = np.asarray(tensors["token_embd.weight"].data).reshape(output.shape)
    assert np.all(output[0x80:0x100, 0] < -1)
    assert np.all(np.abs(output[:0x80, 0]) < 1)
    assert np.all(embd[:, 0] > 0.1)


def test_mmproj_metadata(pair: TinyPair) -> None:
    shape = TinyShape.tiny()
    reader = gguf.GGUFReader(pair.mmproj)
    assert _value(reader, "general.architecture") == "clip"
    assert _value(reader, "clip.projector_type") == "phi4"
    assert _value(reader, "clip.has_vision_encoder") is True
    assert _value(reader, "clip.use_gelu") is True
    assert _value(reader, "clip.vision.projection_dim") == shape.text_embd
    assert _value(reader, "clip.vision.patch_size") == 16
    assert _value(reader, "clip.vision.image_min_pixels") == 256 * 16 * 16
    assert _value(reader, "clip.vision.image_max_pixels") == 3600 * 16 * 16
    assert list(_value(reader, "clip.vision.image_mean")) == [0.5, 0.5, 0.5]
    assert list(_value(reader, "clip.vision.image_std")) == [0.5, 0.5, 0.5]
    tensors = _tensors(reader)
    grid = shape.image_size // shape.patch_size
    assert list(tensors["v.position_embd.weight"].shape) == [shape.vision_embd, grid * grid]
    assert list(tensors["mm.0.weight"].shape) == [shape.vision_embd, shape.text_embd]
    assert list(tensors["mm.2.weight"].shape) == [shape.text_embd, shape.text_embd]
    assert not [name for name in tensors if "post_ln" in name]


@pytest.mark.parametrize(
    ("weight_type", "matrix_type"),
    [
        ("F16", gguf.GGMLQuantizationType.F16),
        ("Q8_0", gguf.GGMLQuantizationType.Q8_0),
    ],
)
def test_weight_types(tmp_path: Path, weight_type: str, matrix_type: int) -> None:
    shape = TinyShape.from_overrides(TinyShape.tiny(), weight_type=weight_type, vision_ff=48)
    pair = write_tiny_pair(tmp_path, shape)
    text = _tensors(gguf.GGUFReader(pair.model))
    vision = _tensors(gguf.GGUFReader(pair.mmproj))
    assert text["blk.0.attn_qkv.weight"].tensor_type == matrix_type
    assert text["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert vision["v.position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    # 48 is not a multiple of Q8_0's block of 32, so that matrix stays F16.
    assert vision["v.blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F16


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = write_tiny_pair(tmp_path / "a", seed=3)
    second = write_tiny_pair(tmp_path / "b", seed=3)
    other = write_tiny_pair(tmp_path / "c", seed=4)
    assert first.model.read_bytes() == second.model.read_bytes()
    assert first.model.read_bytes() != other.model.read_bytes()


def test_ensure_tiny_pair_reuses_cache(tmp_path: Path) -> None:
    first = ensure_tiny_pair(tmp_path)
    stamps = (first.model.stat().st_mtime_ns, first.mmproj.stat().st_mtime_ns)
    again = ensure_tiny_pair(tmp_path)
    assert again == first
    assert (again.model.stat().st_mtime_ns, again.mmproj.stat().st_mtime_ns) == stamps
    bigger = ensure_tiny_pair(tmp_path, TinyShape.from_overrides(TinyShape.tiny(), text_embd=128))
    assert bigger.model.parent != first.model.parent
    reseeded = ensure_tiny_pair(tmp_path, seed=1)
    assert reseeded.model.parent != first.model.parent


def test_ensure_tiny_pair_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pair = ensure_tiny_pair()
    assert pair.model.is_relative_to(tmp_path / "deskpilot" / "tiny")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text_heads": 5}, "not divisible by text_heads"),
        ({"text_kv_heads": 3}, "not divisible by text_kv_heads"),
        ({"text_embd": 72, "text_heads": 8, "text_kv_heads": 8}, "must be even"),
        ({"vision_heads": 3}, "not divisible by vision_heads"),
        ({"image_size": 250}, "not a multiple of patch_size"),
        ({"min_patches": 4000}, "exceeds max_patches"),
        ({"text_ctx": 2048}, "must exceed max_patches"),
        ({"vocab_size": 100}, "below the"),
        ({"text_layers": 0}, "must be positive"),
        ({"text_embd": 64.0}, "must be an integer"),
        ({"weight_type": "Q4_K"}, "weight_type must be one of"),
    ],
)
def test_invalid_shapes_raise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TinyShape.from_overrides(TinyShape.tiny(), **overrides)


def test_from_overrides() -> None:
    shape = TinyShape.from_overrides(TinyShape.tiny(), text_layers=3, vision_layers=None)
    assert shape.text_layers == 3
    assert shape.vision_layers == TinyShape.tiny().vision_layers
    with pytest.raises(ValueError, match="unknown TinyShape field"):
        TinyShape.from_overrides(TinyShape.tiny(), text_dim=8)


def test_real_shape_is_valid_without_writing() -> None:
    shape = TinyShape.phi4rv_15b("Q8_0")
    assert shape.text_head_dim == 128
    assert shape.text_qkv_rows == 5120 + 2 * 10 * 128
    assert shape.position_grid == 16
    assert shape.vision_layers == 26


# --- the real llama.cpp path -------------------------------------------------------------


@dataclass
class Loaded:
    """The tiny pair loaded through llama-cpp-python: the Llama and an mtmd context."""

    llama_cpp: Any
    mtmd_cpp: Any
    llm: Any
    mtmd_ctx: Any


@pytest.fixture(scope="module")
def quiet_native_logs() -> Iterator[None]:
    """Route llama.cpp and mtmd logs to a no-op callback, then restore them."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    @llama_cpp.llama_log_callback
    def ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        del level, text, user_data

    previous = llama_cpp.llama_log_callback()
    previous_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(previous), ctypes.byref(previous_data))
    llama_cpp.llama_log_set(ignore, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(ignore, ctypes.c_void_p(0))  # also sets mtmd/clip's logger
    try:
        yield
    finally:
        # A NULL callback puts mtmd's default (stderr) logger back.
        mtmd_cpp.mtmd_helper_log_set(llama_cpp.llama_log_callback(), ctypes.c_void_p(0))
        llama_cpp.llama_log_set(previous, previous_data)
        del ignore  # only now may the callback object go: the C side held it until here


@pytest.fixture(scope="module")
def loaded(pair: TinyPair, quiet_native_logs: None) -> Iterator[Loaded]:
    """Load the pair once for the module; free the mtmd context and close the Llama after."""
    del quiet_native_logs
    import llama_cpp
    from llama_cpp import mtmd_cpp

    llm = llama_cpp.Llama(model_path=str(pair.model), n_ctx=4096, n_threads=2, verbose=False)
    mtmd_ctx = None
    try:
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = 2
        mtmd_ctx = mtmd_cpp.mtmd_init_from_file(str(pair.mmproj).encode(), llm.model, params)
        assert mtmd_ctx, "mtmd_init_from_file failed"
        yield Loaded(llama_cpp=llama_cpp, mtmd_cpp=mtmd_cpp, llm=llm, mtmd_ctx=mtmd_ctx)
    finally:
        if mtmd_ctx:
            mtmd_cpp.mtmd_free(mtmd_ctx)
        llm.close()  # explicitly: leaving it to interpreter exit raises from mtmd_free


@contextmanager
def _image_chunks(loaded: Loaded, width: int, height: int) -> Iterator[tuple[Any, list[Any]]]:
    """Tokenize a chat prompt around one random raw-RGB image; yields (chunks, [(type, n)])."""
    mtmd_cpp = loaded.mtmd_cpp
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = (ctypes.c_uint8 * pixels.size).from_buffer_copy(pixels.tobytes())
    bitmap = mtmd_cpp.mtmd_bitmap_init(width, height, buffer)
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    try:
        prompt = (
            b"<|im_start|>user<|im_sep|>"
            + mtmd_cpp.mtmd_default_marker()
            + b"\nwhere is the button?<|im_end|><|im_start|>assistant<|im_sep|>"
        )
        text = mtmd_cpp.mtmd_input_text(prompt, len(prompt), False, True)
        bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
        rc = mtmd_cpp.mtmd_tokenize(loaded.mtmd_ctx, chunks, ctypes.byref(text), bitmaps, 1)
        assert rc == 0
        kinds = []
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kinds.append(
                (
                    mtmd_cpp.mtmd_input_chunk_get_type(chunk),
                    mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk),
                )
            )
        yield chunks, kinds
    finally:
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        mtmd_cpp.mtmd_bitmap_free(bitmap)


def _last_logits(loaded: Loaded) -> np.ndarray:
    pointer = loaded.llama_cpp.llama_get_logits_ith(loaded.llm.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(loaded.llm.n_vocab(),)).copy()


@pytest.mark.llama
def test_llama_tokenizes_specials_as_one_token(loaded: Loaded) -> None:
    llm = loaded.llm
    ids = special_token_ids()
    tokens = llm.tokenize(
        b"<|im_start|>user<|im_sep|>hi<|dummy_84|><think></think>", add_bos=False, special=True
    )
    assert tokens[0] == ids["<|im_start|>"]
    assert tokens.count(ids["<|dummy_84|>"]) == 1
    assert llm.tokenize(b"<|dummy_84|>", add_bos=False, special=True) == [ids["<|dummy_84|>"]]
    assert llm.token_eos() == ids["<|im_end|>"]
    assert llm.detokenize([ids["<think>"]]) == b""  # CONTROL: invisible in plain output


@pytest.mark.llama
def test_llama_text_logits_avoid_high_bytes(loaded: Loaded) -> None:
    llm = loaded.llm
    llm.reset()
    llm.eval(llm.tokenize(b"<|im_start|>user<|im_sep|>hello", add_bos=False, special=True))
    logits = _last_logits(loaded)
    assert logits[0x80:0x100].max() < logits.max() - 20


@pytest.mark.llama
def test_mtmd_image_token_count(loaded: Loaded) -> None:
    width, height = 640, 368
    with _image_chunks(loaded, width, height) as (_, kinds):
        images = [n for kind, n in kinds if kind == loaded.mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE]
        assert images == [(width // 16) * (height // 16)]


@pytest.mark.llama
def test_mtmd_eval_image_prompt(loaded: Loaded) -> None:
    llama_cpp, llm = loaded.llama_cpp, loaded.llm
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    with _image_chunks(loaded, 640, 368) as (chunks, kinds):
        n_past = llama_cpp.llama_pos(0)
        rc = loaded.mtmd_cpp.mtmd_helper_eval_chunks(
            loaded.mtmd_ctx, llm.ctx, chunks, 0, 0, llm.n_batch, True, ctypes.byref(n_past)
        )
        assert rc == 0
        assert n_past.value == sum(n for _, n in kinds)
    # The output-head bias also holds with image embeddings in the context.
    logits = _last_logits(loaded)
    assert logits[0x80:0x100].max() < logits.max() - 20


@pytest.mark.llama
def test_chat_template_renders_with_llama_cpp(loaded: Loaded) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = loaded.llm.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|endoftext|>")
    prompt = formatter(
        messages=[
            {"role": "user", "content": "<image>\nclick OK"},
            {"role": "assistant", "content": "<|dummy_84|>done"},
            {"role": "user", "content": "again"},
        ]
    ).prompt
    assert prompt.startswith("<|im_start|>system<|im_sep|>")
    assert "<|im_start|>user<|im_sep|><image>\nclick OK<|im_end|>" in prompt
    assert "<|im_start|>assistant<|im_sep|>\n<|dummy_84|>done<|im_end|>" in prompt
    assert prompt.endswith(
        "<|im_start|>user<|im_sep|>again<|im_end|>\n<|im_start|>assistant<|im_sep|>\n"
    )
