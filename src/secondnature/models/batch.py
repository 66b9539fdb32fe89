"""Several samples decoded together by llama.cpp's own batching, through llama-cpp-python's low-level API.

A group asks for K samples of one prompt. Decoding one sequence at a time reads every weight once per
token; on a CPU that read, not the arithmetic, sets the pace. Here the prompt is evaluated once into
sequence 0 and shared with sequences 1..K-1 (in a unified KV cache `seq_cp` shares the cells, it copies
nothing); then each step decodes one token of every live sequence in one `llama_decode` call, so the
weights are read once for K tokens. Sampling is llama.cpp's sampler chain, built as llama-cpp-python's
`create_completion` builds it, one chain a sample seeded `seed + i`; the text is cut as it cuts it (end
of generation, the chat template's stop text, the token limit). The same call always gives the same
samples. They are not always bit for bit the single-stream ones: llama.cpp's CPU kernels round a step of
several rows differently from a step of one, so a long greedy reply can part from the single-stream
reply at a near tie (`benchmarks/throughput.py` counts how often).
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_SEQS = 8  # sequences decoded together; a larger group is decoded in turns of this many
# Fewer rows than this gain nothing together: on the 2-core x86 machine of benchmarks/results/throughput.json two
# rows ran 1.03x [0.97, 1.10] the single-stream speed, four 1.57x [1.50, 1.63]; and a batch's text can part from
# the single-stream text, so it is taken only where it pays
MIN_SEQS = 4


@dataclass(frozen=True)
class Sample:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Batcher:
    """A second llama.cpp context on a loaded model's weights, with room for MAX_SEQS sequences. Stateful
    (native memory), so a class; `close` frees it."""

    def __init__(self, llm, n_ctx: int):
        import llama_cpp
        from llama_cpp import _internals
        self.llm, self.lib, self.internals = llm, llama_cpp, _internals
        # the model's own context settings (attention kernel, threads, batch sizes), so a row is computed as there
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx
        params.n_seq_max = MAX_SEQS
        params.kv_unified = True  # one pool of cells: the shared prompt is held once, each sample's tail apart
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        if llm._lora_adapter:  # a distilled adapter applies to this context as to the model's own
            import ctypes
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
            llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, (ctypes.c_float * 1)(llm.lora_scale))
        self.batch = _internals.LlamaBatch(n_tokens=max(llm.n_batch, MAX_SEQS), embd=0, n_seq_max=MAX_SEQS,
                                           verbose=False)
        self.n_ctx = n_ctx
        self.formatter = _formatter(llm)
        self.window = llm.n_ctx()  # each sample keeps the single-stream window: prompt + reply within it

    def chat(self, messages: list[dict], tools: list[dict] | None, *, n: int, temperature: float, top_p: float,
             max_tokens: int, seed: int) -> list[Sample]:
        """`n` samples of a chat, its prompt written by the GGUF's own chat template as create_chat_completion
        writes it."""
        r = self.formatter(messages=messages, tools=tools)
        prompt = self.llm.tokenize(r.prompt.encode("utf-8"), add_bos=not r.added_special, special=True)
        stop = r.stop if isinstance(r.stop, list) else [r.stop] if r.stop else []
        return self.generate(prompt, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                             stop=stop)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()

    def generate(self, prompt: list[int], *, n: int, temperature: float, top_p: float, max_tokens: int,
                 seed: int, stop: list[str]) -> list[Sample]:
        """`n` samples of one tokenized prompt; sample i seeded `seed + i`. Raises ValueError when the prompt
        does not fit the window, as single-stream decoding does."""
        if len(prompt) >= self.window:
            raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {self.window}")
        limit = min(max_tokens, self.window - len(prompt))
        per_turn = max(1, min(MAX_SEQS, (self.n_ctx - len(prompt)) // max(limit, 1)))
        out: list[Sample] = []
        for first in range(0, n, per_turn):
            out += self._turn(prompt, min(per_turn, n - first), temperature, top_p, limit, seed + first, stop)
        return out

    def _turn(self, prompt: list[int], k: int, temperature: float, top_p: float, limit: int, seed: int,
              stop: list[str]) -> list[Sample]:
        lib, ctx = self.lib, self.ctx
        lib.llama_memory_clear(ctx.memory, True)
        last = self._prefill(prompt)
        for s in range(1, k):
            ctx.kv_cache_seq_cp(0, s, -1, -1)
        samplers = [self._sampler(temperature, top_p, seed + s) for s in range(k)]
        tokens: list[list[int]] = [[] for _ in range(k)]
        texts: list[str | None] = [None] * k  # set when a sample ends
        rows = {s: last for s in range(k)}  # where each live sample's next logits are in the last batch
        pos = len(prompt)
        while rows:
            step: dict[int, int] = {}
            for s, row in rows.items():
                tok = samplers[s].sample(ctx, row)
                text = self._finished(prompt, tokens[s], tok, limit, stop)
                if text is None:
                    tokens[s].append(tok)
                    step[s] = tok
                else:
                    texts[s] = text
            if not step:
                break
            self.batch.reset()
            b = self.batch.batch
            for j, (s, tok) in enumerate(step.items()):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, pos, 1, True
                b.seq_id[j][0] = s
            b.n_tokens = len(step)
            ctx.decode(self.batch)
            rows = {s: j for j, s in enumerate(step)}
            pos += 1
        for sm in samplers:
            sm.close()
        return [Sample(texts[s] or "", len(prompt), len(tokens[s])) for s in range(k)]

    def _prefill(self, prompt: list[int]) -> int:
        """Evaluate the prompt into sequence 0 in chunks of n_batch; the batch row holding its last logits."""
        n_batch = self.llm.n_batch
        for start in range(0, len(prompt), n_batch):
            chunk = prompt[start:start + n_batch]
            self.batch.reset()
            b = self.batch.batch
            for j, tok in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, start + j, 1, False
                b.seq_id[j][0] = 0
            b.logits[len(chunk) - 1] = True
            b.n_tokens = len(chunk)
            self.ctx.decode(self.batch)
        return len(chunk) - 1

    def _sampler(self, temperature: float, top_p: float, seed: int):
        """The chain create_completion builds for these parameters (its penalties are neutral by default and
        left out)."""
        sm = self.internals.LlamaSampler()
        if temperature == 0:
            sm.add_greedy()
        else:
            sm.add_top_k(40)
            sm.add_typical(1.0, 1)
            sm.add_top_p(top_p, 1)
            sm.add_min_p(0.05, 1)
            sm.add_temp(temperature)
            sm.add_dist(seed)
        return sm

    def _finished(self, prompt: list[int], tokens: list[int], tok: int, limit: int, stop: list[str]) -> str | None:
        """The sample's text if `tok` ends it (end of generation, a stop text, the token limit), else None."""
        llm = self.llm
        if self.lib.llama_vocab_is_eog(llm._model.vocab, tok):
            return _text(llm, prompt, tokens)
        text = _text(llm, prompt, tokens + [tok])
        hits = [text.index(s) for s in stop if s and s in text]
        if hits:
            return text[:min(hits)]
        if len(tokens) + 1 >= limit:
            tokens.append(tok)
            return text
        return None


def supported(llm) -> bool:
    """Whether a loaded model writes its prompts with the GGUF's own template (the packaged models do), the
    one this module writes them with."""
    return llm.chat_handler is None and llm.chat_format == "chat_template.default"


def _formatter(llm):
    """The GGUF's chat template, as llama-cpp-python builds it for `chat_template.default`."""
    from llama_cpp import llama_chat_format
    eos, bos = llm.token_eos(), llm.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"], eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "", stop_token_ids=[eos])


def _text(llm, prompt: list[int], tokens: list[int]) -> str:
    return llm.detokenize(tokens, prev_tokens=prompt).decode("utf-8", errors="ignore")
