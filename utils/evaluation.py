"""Evaluate a (pruned) HookedTransformer: perplexity, multiple-choice accuracy, an lm-eval adapter.

* ``loglikelihoods(model, [(context, continuation), ...])``: summed log-prob of each continuation
  and whether it is the greedy one — the quantity lm-eval-harness calls ``loglikelihood``.
  Requests that need the same forward pass (e.g. single-token choices after one context) share it.
* ``multiple_choice(model, items)``: acc and acc_norm (log-likelihood per character, as lm-eval).
* ``perplexity(model, batches)``: exp of the mean next-token NLL over token windows.
* ``task_table(model, tasks)``: which templated tasks the dense model does clearly above chance
  (``accuracy_needed``), so that only those are used to compare pruned models.
* ``HookedLM``: an ``lm_eval.api.model.LM`` around a HookedTransformer (needs ``pip install lm-eval``).

Public names: ``loglikelihoods``, ``token_loglikelihoods``, ``encode_pair``, ``multiple_choice``,
``perplexity``, ``accuracy_needed``, ``task_table``, ``HookedLM``, ``LM_EVAL_AVAILABLE``,
``CHANCE_MARGIN_SE``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from transformer_lens import HookedTransformer

from utils.data import bos_prefix
from utils.tasks import MCItem, chance_level

__all__ = [
    "CHANCE_MARGIN_SE",
    "LM_EVAL_AVAILABLE",
    "HookedLM",
    "accuracy_needed",
    "encode_pair",
    "loglikelihoods",
    "multiple_choice",
    "perplexity",
    "task_table",
    "token_loglikelihoods",
]

CHANCE_MARGIN_SE = 2.0  # a task is kept if the dense accuracy beats chance by this many standard errors


def _encode(model: HookedTransformer, text: str) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pair(model: HookedTransformer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split as lm-eval does (encode the whole, cut at the context).

    Trailing spaces of the context move to the continuation; an empty context is the BOS token for a
    model that wants one (``model.cfg.default_prepend_bos``), else the EOS token.
    """
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        return bos_prefix(model) or [model.tokenizer.eos_token_id], _encode(model, continuation)
    whole, ctx = _encode(model, context + continuation), _encode(model, context)
    return whole[: len(ctx)], whole[len(ctx) :]


def _model_input(model: HookedTransformer, ctx: list[int], cont: list[int]) -> tuple[int, ...]:
    """The tokens the model reads to score ``cont`` after ``ctx``: the last ``n_ctx`` of ctx + cont
    but the final one; for a model that wants BOS first, BOS then the last ``n_ctx - 1`` of them (a
    BOS already leading ctx is not doubled)."""
    head = bos_prefix(model)
    if not head:
        return tuple((ctx + cont)[-model.cfg.n_ctx - 1 : -1])
    ids = (ctx + cont)[:-1]
    if ids[:1] == head:
        ids = ids[1:]
    return tuple(head + ids[max(0, len(ids) - (model.cfg.n_ctx - 1)) :])


@torch.no_grad()
def token_loglikelihoods(
    model: HookedTransformer, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 32
) -> list[tuple[float, bool]]:
    """(sum log p(continuation | context), continuation is greedy) for token-id pairs (context ids,
    continuation ids); a model that wants BOS first (``model.cfg.default_prepend_bos``) reads it first."""
    if any(not cont for _, cont in pairs):
        raise ValueError("every continuation needs at least one token")
    need: dict[tuple[int, ...], int] = {}  # each distinct input -> how many final positions are scored
    for ctx, cont in pairs:
        key = _model_input(model, ctx, cont)
        need[key] = max(need.get(key, 0), len(cont))
    order = sorted(need, key=len, reverse=True)
    logprobs: dict[tuple[int, ...], torch.Tensor] = {}
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        tokens = torch.full((len(chunk), len(chunk[0])), pad, dtype=torch.long)
        for row, ids in enumerate(chunk):
            tokens[row, : len(ids)] = torch.tensor(ids)
        logits = model(tokens.to(model.cfg.device))
        for row, ids in enumerate(chunk):  # keep only the scored positions, on the CPU
            logprobs[ids] = logits[row, len(ids) - need[ids] : len(ids)].float().log_softmax(-1).cpu()
    results = []
    for ctx, cont in pairs:
        logp = logprobs[_model_input(model, ctx, cont)][-len(cont) :]
        target = torch.tensor(cont)
        results.append((float(logp.gather(-1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())))
    return results


def loglikelihoods(
    model: HookedTransformer, requests: Sequence[tuple[str, str]], batch_size: int = 32
) -> list[tuple[float, bool]]:
    """(sum log p(continuation | context), is greedy) for (context, continuation) strings."""
    return token_loglikelihoods(model, [encode_pair(model, c, x) for c, x in requests], batch_size)


def multiple_choice(model: HookedTransformer, items: Sequence[MCItem], batch_size: int = 32) -> dict[str, float]:
    """acc (argmax log-likelihood) and acc_norm (argmax log-likelihood per character) over ``items``."""
    requests = [(item.context, choice) for item in items for choice in item.choices]
    scores = iter(loglikelihoods(model, requests, batch_size))
    acc = acc_norm = 0
    for item in items:
        ll = [next(scores)[0] for _ in item.choices]
        per_char = [s / len(c) for s, c in zip(ll, item.choices, strict=True)]
        acc += max(range(len(ll)), key=ll.__getitem__) == item.label
        acc_norm += max(range(len(ll)), key=per_char.__getitem__) == item.label
    return {"acc": acc / len(items), "acc_norm": acc_norm / len(items)}


@torch.no_grad()
def perplexity(model: HookedTransformer, batches: Iterable[torch.Tensor]) -> float:
    """exp(mean next-token NLL) over token windows [batch, pos]."""
    total, count = 0.0, 0
    for tokens in batches:
        tokens = tokens.to(model.cfg.device)
        logp = model(tokens).float().log_softmax(-1)[:, :-1]
        total -= float(logp.gather(-1, tokens[:, 1:, None]).sum())
        count += tokens[:, 1:].numel()
    return math.exp(total / count)


def accuracy_needed(chance: float, n_items: int) -> float:
    """Accuracy a task must exceed to count as clearly above chance: chance + 2 binomial SEs."""
    return chance + CHANCE_MARGIN_SE * math.sqrt(chance * (1 - chance) / n_items)


def task_table(model: HookedTransformer, tasks: dict[str, list[MCItem]]) -> list[dict]:
    """Per task: items, chance, dense acc/acc_norm, the accuracy needed and whether the task is kept."""
    rows = []
    for name, items in tasks.items():
        chance = chance_level(items)
        needed = accuracy_needed(chance, len(items))
        scores = multiple_choice(model, items)
        kept = scores["acc"] > needed
        reason = "kept" if kept else f"dropped: dense acc {scores['acc']:.2f} <= chance + {CHANCE_MARGIN_SE} SE = {needed:.2f}"
        rows.append({"task": name, "items": len(items), "chance": chance, **scores, "needed": needed, "kept": kept, "reason": reason})
    return rows


# ----------------------------------------------------------------------------- lm-eval adapter

try:
    from lm_eval.api.model import LM as _LMBase

    LM_EVAL_AVAILABLE = True
except ImportError:  # the adapter is only needed at paper scale
    _LMBase = object
    LM_EVAL_AVAILABLE = False


class HookedLM(_LMBase):
    """lm-eval-harness ``LM`` around a (possibly pruned) HookedTransformer.

    ``lm_eval.simple_evaluate(model=HookedLM(model), tasks=["piqa", ...])`` evaluates whatever
    sublayers the model currently skips. Requires ``pip install lm-eval``.
    """

    def __init__(self, model: HookedTransformer, batch_size: int = 16, max_gen_toks: int = 64) -> None:
        if not LM_EVAL_AVAILABLE:
            raise ImportError("HookedLM needs lm-eval-harness: `pip install lm-eval==0.4.13`")
        super().__init__()
        self.model, self.batch_size, self.max_gen_toks = model, batch_size, max_gen_toks

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """Summed log-prob and greediness of each request's continuation given its context."""
        return loglikelihoods(self.model, [r.args[:2] for r in requests], self.batch_size)

    def loglikelihood_rolling(self, requests) -> list[float]:
        """Log-likelihood of each whole text, in windows of the model's context, first token after BOS
        (a model that wants one) or EOS."""
        out = []
        first = bos_prefix(self.model) or [self.model.tokenizer.eos_token_id]
        for request in requests:
            ids = first + _encode(self.model, request.args[0])
            step = self.model.cfg.n_ctx
            pairs = [(ids[max(0, s - step) : s], ids[s : s + step]) for s in range(1, len(ids), step)]
            out.append(sum(ll for ll, _ in token_loglikelihoods(self.model, pairs, self.batch_size)))
        return out

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        """Greedy continuation of each context until a stop string or ``max_gen_toks`` tokens."""
        out = []
        for request in requests:
            context, kwargs = request.args[0], request.args[1]
            stops = kwargs.get("until", []) or []
            stops = [stops] if isinstance(stops, str) else stops
            ids = torch.tensor([bos_prefix(self.model) + _encode(self.model, context)], device=self.model.cfg.device)
            limit = kwargs.get("max_gen_toks", self.max_gen_toks)
            generated = self.model.generate(ids, max_new_tokens=limit, do_sample=False, verbose=False, stop_at_eos=True)
            text = self.model.tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True)
            for stop in stops:
                text = text.split(stop)[0]
            out.append(text)
        return out
