"""Phi-4-reasoning-vision in-process through llama-cpp-python and llama.cpp's mtmd.

We drive the model with llama-cpp-python's public ``Llama`` object (tokenizer, ``eval``,
``generate``, sampler, grammar) and mtmd's C API for the image, instead of the shipped
``MTMDChatHandler``, because the handler (a) needs the image as an encoded data URL, (b) hands
the template a list of parts where the real template expects a string, and (c) relies on
``max_tokens``, which llama-cpp-python can skip. Here the screenshot goes to mtmd as raw RGB,
the prompt is rendered from the GGUF's own template, and the output limit is our own count.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deskpilot.models.native import silence_native_logs
from deskpilot.models.prompt import DIRECT_TOKEN, IMAGE_MARKER, THINK_CLOSE, THINK_OPEN, render_chat
from deskpilot.models.runtime import Mode, Reply, Request, RuntimeFailure

if TYPE_CHECKING:
    from llama_cpp import LlamaGrammar

    from deskpilot.grounding.preprocess import ModelImage

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 8192


class LlamaCppRuntime:
    """A text GGUF plus its mmproj, loaded in this process."""

    def __init__(self, model_path: Path, mmproj_path: Path, *, n_ctx: int = DEFAULT_N_CTX,
                 n_gpu_layers: int = -1, n_threads: int | None = None, n_batch: int = 512,
                 seed: int = 0, reuse_prefix: bool = True) -> None:
        for label, path in (("model", model_path), ("mmproj", mmproj_path)):
            if not Path(path).is_file():
                raise RuntimeFailure(f"{label} file not found: {path}")
        import llama_cpp
        from llama_cpp import mtmd_cpp

        silence_native_logs()
        self._lc = llama_cpp
        self._mtmd_api = mtmd_cpp
        self._model_path = Path(model_path)
        threads = n_threads or os.cpu_count() or 1
        started = time.perf_counter()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                n_gpu_layers=n_gpu_layers, n_threads=threads, n_threads_batch=threads,
                seed=seed, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"llama.cpp could not load {model_path}: {exc}") from exc
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = n_gpu_layers != 0
        params.print_timings = False
        params.n_threads = threads
        ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj_path).encode(), self._llama.model, params)
        if not ctx:
            self._llama.close()
            raise RuntimeFailure(f"llama.cpp could not load the vision projector {mmproj_path}")
        self._mtmd: Any = ctx
        if not mtmd_cpp.mtmd_support_vision(ctx):
            self.close()
            raise RuntimeFailure(f"{mmproj_path} has no vision encoder")
        self._marker = mtmd_cpp.mtmd_default_marker().decode()
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._template = self._llama.metadata.get("tokenizer.chat_template") or None
        self._think_open = self._single_token(THINK_OPEN)
        self._think_close = self._single_token(THINK_CLOSE)
        self._direct = self._single_token(DIRECT_TOKEN)
        self._seed = seed
        self._reuse_prefix = reuse_prefix
        # Images in the evaluated state: start position -> (digest of the pixels, end position).
        self._images: dict[int, tuple[bytes, int]] = {}
        self._calls = 0
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s in %.2fs (n_ctx=%d, gpu layers=%d, threads=%d)",
                 Path(model_path).name, self.load_seconds, n_ctx, n_gpu_layers, threads)

    @property
    def name(self) -> str:
        """The model file's name."""
        return self._model_path.name

    def _single_token(self, text: str) -> int:
        ids = self._llama.tokenize(text.encode(), add_bos=False, special=True)
        if len(ids) != 1:
            self.close()
            raise RuntimeFailure(f"the model's vocabulary has no single token for {text!r}; "
                                 "is this a Phi-4-reasoning-vision GGUF?")
        return ids[0]

    # ------------------------------------------------------------------ one call

    def complete(self, request: Request) -> Reply:
        """Evaluate the prompt and screenshot, then decode under the request's limits."""
        if self._mtmd is None:
            raise RuntimeFailure("the runtime is closed")
        if request.image is not None and request.prompt.count(IMAGE_MARKER) != 1:
            raise ValueError(f"the prompt must hold {IMAGE_MARKER} exactly once with an image")
        text = render_chat(request.prompt.replace(IMAGE_MARKER, self._marker),
                           template=self._template, mode=request.mode)
        timings: dict[str, float] = {}
        # A fresh, reproducible seed per call: llama-cpp-python would reuse one seed each time,
        # so sampling at a temperature above 0 would repeat itself on an identical prompt.
        self._calls += 1
        self._llama.set_seed(self._seed + self._calls)
        t0 = time.perf_counter()
        prompt_tokens, image_tokens, reused, reused_image = self._evaluate_prompt(
            text, request, timings)
        t1 = time.perf_counter()
        timings["prefill_s"] = t1 - t0 - timings.get("image_encode_s", 0.0)
        reasoning, answer, n_out, truncated = self._decode(request)
        timings["decode_s"] = time.perf_counter() - t1
        return Reply(answer=answer, reasoning=reasoning, prompt_tokens=prompt_tokens,
                     image_tokens=image_tokens, output_tokens=n_out, truncated=truncated,
                     reused_tokens=reused, reused_image_tokens=reused_image, timings=timings)

    def _evaluate_prompt(self, text: str, request: Request,
                         timings: dict[str, float]) -> tuple[int, int, int, int]:
        digests = [] if request.image is None else [_digest(request.image.rgb)]
        bitmaps = [] if request.image is None else [self._bitmap(request.image)]
        with self._tokenized(text, bitmaps) as chunks:
            if self._reuse_prefix:
                keep = self._keep_prefix(chunks, digests)
            else:
                self._clear_state()
                keep = 0
            prompt_tokens, image_tokens, reused_image = self._eval_chunks(
                chunks, timings, digests, skip=keep)
            return prompt_tokens, image_tokens, keep, reused_image

    def _bitmap(self, image: ModelImage | bytes) -> Any:
        """An mtmd bitmap from raw RGB (the hot path: no encode) or from encoded file bytes."""
        api = self._mtmd_api
        if isinstance(image, bytes):
            buf = (ctypes.c_ubyte * len(image)).from_buffer_copy(image)
            bitmap = api.mtmd_helper_bitmap_init_from_buf(self._mtmd, buf, len(image), False)
        else:
            rgb = image.rgb
            data = rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))  # mtmd copies it
            bitmap = api.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], data)
        if not bitmap:
            raise RuntimeFailure("mtmd could not take the screenshot bitmap")
        return bitmap

    @contextlib.contextmanager
    def _tokenized(self, text: str, bitmaps: list[Any]) -> Iterator[Any]:
        """mtmd's chunks for a prompt and its bitmaps (freed, with the bitmaps, on exit)."""
        api = self._mtmd_api
        chunks = api.mtmd_input_chunks_init()
        try:
            encoded = text.encode()
            inp = api.mtmd_input_text()
            inp.text, inp.text_len = encoded, len(encoded)
            inp.add_special, inp.parse_special = False, True
            array = (api.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = api.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                raise RuntimeFailure(f"mtmd could not tokenize the prompt (error {rc})")
            yield chunks
        finally:
            api.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                api.mtmd_bitmap_free(bitmap)

    def embed_image(self, image: ModelImage | bytes) -> np.ndarray:
        """The vision encoder's output for one image: (image tokens, embedding width) floats.

        Takes the raw RGB the agent uses, or encoded bytes (PNG, JPEG) as an HTTP client would
        send them, so the two paths can be compared.
        """
        if self._mtmd is None:
            raise RuntimeFailure("the runtime is closed")
        api = self._mtmd_api
        with self._tokenized(self._marker, [self._bitmap(image)]) as chunks:
            for i in range(api.mtmd_input_chunks_size(chunks)):
                chunk = api.mtmd_input_chunks_get(chunks, i)
                if api.mtmd_input_chunk_get_type(chunk) == api.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    continue
                if api.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                    raise RuntimeFailure("mtmd could not encode the image")
                n = api.mtmd_input_chunk_get_n_tokens(chunk)
                width = self._lc.llama_model_n_embd(self._llama.model)
                embd = api.mtmd_get_output_embd(self._mtmd)
                return np.ctypeslib.as_array(embd, shape=(n * width,)).reshape(n, width).copy()
        raise RuntimeFailure("mtmd made no image chunk")

    def _clear_state(self) -> None:
        self._images.clear()
        self._llama.reset()
        memory = self._lc.llama_get_memory(self._llama.ctx)
        if memory is not None:
            self._lc.llama_memory_clear(memory, True)

    def _keep_prefix(self, chunks: Any, digests: list[bytes]) -> int:
        """Keep the evaluated state for the longest prefix this prompt shares with the last.

        Text tokens are compared one by one. An image counts as shared when the same pixels
        (by digest) were evaluated at the same position: then its embeddings stay in the KV
        cache and the image is neither encoded nor decoded again. That is what lets a
        grounding call whose prompt starts with the planner's screenshot skip the image.
        Returns the tokens kept.
        """
        api, llama = self._mtmd_api, self._llama
        previous = llama.input_ids[: llama.n_tokens]
        keep = 0
        images = iter(digests)
        for i in range(api.mtmd_input_chunks_size(chunks)):
            chunk = api.mtmd_input_chunks_get(chunks, i)
            if api.mtmd_input_chunk_get_type(chunk) != api.MTMD_INPUT_CHUNK_TYPE_TEXT:
                digest = next(images, None)
                seen = self._images.get(keep)
                if seen is None or seen[0] != digest or seen[1] > len(previous):
                    break
                keep = seen[1]
                continue
            tokens = _text_tokens(api, chunk)
            same = 0
            limit = min(len(tokens), len(previous) - keep)
            while same < limit and previous[keep + same] == tokens[same]:
                same += 1
            keep += same
            if same < len(tokens):
                break
        keep = min(keep, max(0, self._prompt_length(chunks) - 1))  # one token makes logits
        memory = self._lc.llama_get_memory(llama.ctx)
        if keep == 0 or memory is None or not self._lc.llama_memory_seq_rm(memory, -1, keep, -1):
            self._clear_state()
            return 0
        llama.n_tokens = keep
        self._images = {start: seen for start, seen in self._images.items() if seen[1] <= keep}
        return keep

    def _prompt_length(self, chunks: Any) -> int:
        api = self._mtmd_api
        return sum(api.mtmd_input_chunk_get_n_tokens(api.mtmd_input_chunks_get(chunks, i))
                   for i in range(api.mtmd_input_chunks_size(chunks)))

    def _eval_chunks(self, chunks: Any, timings: dict[str, float], digests: list[bytes], *,
                     skip: int = 0) -> tuple[int, int, int]:
        """Evaluate the prompt's chunks after the first ``skip`` positions (already in the
        cache); the prompt's length, its image tokens, and how many of those were kept."""
        api, llama = self._mtmd_api, self._llama
        image_tokens = reused_image = 0
        images = iter(digests)
        for i in range(api.mtmd_input_chunks_size(chunks)):
            chunk = api.mtmd_input_chunks_get(chunks, i)
            n = api.mtmd_input_chunk_get_n_tokens(chunk)
            if api.mtmd_input_chunk_get_type(chunk) == api.MTMD_INPUT_CHUNK_TYPE_TEXT:
                tokens = _text_tokens(api, chunk)
                done, skip = min(skip, len(tokens)), skip - min(skip, len(tokens))
                self._check_room(len(tokens) - done)
                llama.eval(tokens[done:])
                continue
            image_tokens += n
            digest = next(images)
            start = llama.n_tokens - skip
            if skip > 0:  # _keep_prefix kept this whole image: its positions are in the cache
                seen = self._images[start]
                reused_image += n
                skip -= seen[1] - start
                continue
            self._check_room(n)
            self._eval_image(chunk, timings)
            self._images[start] = (digest, llama.n_tokens)
        return llama.n_tokens, image_tokens, reused_image

    def _check_room(self, n: int) -> None:
        llama = self._llama
        if llama.n_tokens + n > llama.n_ctx():
            raise RuntimeFailure(
                f"prompt needs more than the context of {llama.n_ctx()} tokens "
                f"({llama.n_tokens + n}); lower the image budget or raise --n-ctx")

    def _eval_image(self, chunk: Any, timings: dict[str, float]) -> None:
        api, llama = self._mtmd_api, self._llama
        t0 = time.perf_counter()
        if api.mtmd_encode_chunk(self._mtmd, chunk) != 0:
            raise RuntimeFailure("mtmd could not encode the screenshot")
        timings["image_encode_s"] = timings.get("image_encode_s", 0.0) + time.perf_counter() - t0
        embd = api.mtmd_get_output_embd(self._mtmd)
        start = llama.n_tokens
        new_n_past = self._lc.llama_pos(0)
        rc = api.mtmd_helper_decode_image_chunk(
            self._mtmd, llama.ctx, chunk, embd, self._lc.llama_pos(start),
            self._lc.llama_seq_id(0), llama.n_batch, ctypes.byref(new_n_past),
            api.mtmd_helper_post_decode_callback(), None)  # a NULL callback
        if rc != 0:
            raise RuntimeFailure(f"llama.cpp could not decode the image embeddings (error {rc})")
        llama.n_tokens = new_n_past.value
        # Image positions hold embeddings, not tokens: mark them so no prefix match uses them.
        llama.input_ids[start:llama.n_tokens] = -1

    # ------------------------------------------------------------------ decoding

    def _decode(self, request: Request) -> tuple[str, str, int, bool]:
        from llama_cpp import LlamaGrammar

        stream = _Streamer(self._llama, request.on_text)
        reasoning = ""
        n_out = 0
        mode = request.mode
        if mode is Mode.AUTO:
            first = next(self._sample(request, None), None)
            mode = Mode.REASONING if first == self._think_open else Mode.DIRECT
            self._llama.eval([self._think_open if mode is Mode.REASONING else self._direct])
        if mode is Mode.REASONING:
            tokens: list[int] = []
            if request.on_text is not None:  # the tags are single tokens the streamer skips
                request.on_text(THINK_OPEN)
            for tok in self._sample(request, None):
                if (tok == self._think_close or len(tokens) >= request.max_reasoning_tokens
                        or self._lc.llama_vocab_is_eog(self._vocab, tok)):
                    break
                tokens.append(tok)
                stream.push(tok)
            # Close the trace ourselves when the budget ran out, so an answer always follows.
            self._llama.eval([self._think_close])
            reasoning = stream.text().strip()
            if request.on_text is not None:
                request.on_text(THINK_CLOSE)
            n_out += len(tokens) + 1
            stream = _Streamer(self._llama, request.on_text)
        grammar = LlamaGrammar.from_string(request.grammar) if request.grammar else None
        answer_tokens: list[int] = []
        truncated = True
        for tok in self._sample(request, grammar):
            if tok in (self._think_open, self._think_close, self._direct):
                continue
            if len(answer_tokens) >= request.max_answer_tokens:
                break
            if self._lc.llama_vocab_is_eog(self._vocab, tok):
                truncated = False
                break
            answer_tokens.append(tok)
            stream.push(tok)
        n_out += len(answer_tokens)
        if truncated:
            log.warning("answer cut at the output limit of %d tokens", request.max_answer_tokens)
        return reasoning, stream.text().strip(), n_out, truncated

    def _sample(self, request: Request, grammar: LlamaGrammar | None) -> Iterator[int]:
        gen = self._llama.generate(
            [], reset=False, temp=request.temperature, top_k=40, top_p=0.95, min_p=0.05,
            repeat_penalty=1.0, grammar=grammar)
        try:
            yield from gen
        finally:
            gen.close()

    def close(self) -> None:
        """Free the projector, then the model (in that order: the projector refers to it)."""
        if getattr(self, "_mtmd", None) is not None:
            self._mtmd_api.mtmd_free(self._mtmd)
            self._mtmd = None
        if getattr(self, "_llama", None) is not None:
            self._llama.close()
            self._llama = None  # type: ignore[assignment]


def _digest(rgb: np.ndarray) -> bytes:
    """A fingerprint of an image's pixels and shape (for keeping its evaluated positions)."""
    h = hashlib.blake2b(repr(rgb.shape).encode(), digest_size=16)
    h.update(np.ascontiguousarray(rgb).data)
    return h.digest()


def _text_tokens(api: Any, chunk: Any) -> list[int]:
    count = ctypes.c_size_t()
    ptr = api.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
    return [ptr[j] for j in range(count.value)]


class _Streamer:
    """Detokenizes incrementally, handing complete UTF-8 text to a callback."""

    def __init__(self, llama: Any, callback: Callable[[str], None] | None) -> None:
        self._llama = llama
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []

    def push(self, token: int) -> None:
        piece = self._decoder.decode(self._llama.detokenize([token]))
        if piece:
            self._parts.append(piece)
            if self._callback is not None:
                self._callback(piece)

    def text(self) -> str:
        self._parts.append(self._decoder.decode(b"", final=True))
        return "".join(self._parts)
