import json
import math
import random

import pandas as pd
import pytest
import torch

from utils import evaluation, tasks


def own_logprob(model, ids):
    """Sum of log p(ids[i] | ids[:i]) for i >= 1, from one plain forward pass."""
    logp = model(torch.tensor([ids])).log_softmax(-1)[0]
    return sum(float(logp[i - 1, ids[i]]) for i in range(1, len(ids)))


def test_token_loglikelihoods_equal_the_models_own(tiny):
    pairs = [([5, 6, 7], [8]), ([5, 6, 7], [9]), ([1, 2], [3, 4, 5]), ([10], [11, 12])]
    got = evaluation.token_loglikelihoods(tiny, pairs, batch_size=2)
    for (ctx, cont), (ll, greedy) in zip(pairs, got, strict=False):
        assert ll == pytest.approx(own_logprob(tiny, ctx + cont) - own_logprob(tiny, ctx), abs=1e-4)
        logits = tiny(torch.tensor([ctx + cont]))[0, len(ctx) - 1 : -1]
        assert greedy == bool((logits.argmax(-1) == torch.tensor(cont)).all())


def test_a_bos_model_scores_continuations_after_bos(bos_model):
    model = bos_model([f"w{c}" for c in "abcdefghijklmnopqrst"], n_ctx=8)  # as Gemma-3: default_prepend_bos
    bos = model.tokenizer.bos_token_id

    def after_bos(ctx, cont):  # the model reads BOS, then the last n_ctx - 1 tokens before the last
        ids = [bos] + [t for t in ctx + cont if t != bos][-model.cfg.n_ctx :]
        logp = model(torch.tensor([ids[:-1]])).log_softmax(-1)[0, -len(cont) :]
        return float(logp.gather(-1, torch.tensor(cont)[:, None]).sum())

    long = list(range(3, 17))  # longer than the context: BOS stays, the oldest tokens go
    pairs = [([5, 6, 7], [8]), ([5, 6], [9, 10]), ([bos, 5, 6], [9, 10]), (long, [17, 18]), ([bos], [4, 5])]
    got = evaluation.token_loglikelihoods(model, pairs, batch_size=2)
    for (ctx, cont), (ll, _) in zip(pairs, got, strict=True):
        assert ll == pytest.approx(after_bos(ctx, cont), abs=1e-4)
    assert got[1] == got[2]  # a BOS already leading the context is not doubled
    w = model.tokenizer.convert_tokens_to_ids
    assert evaluation.encode_pair(model, "", "wc wd") == ([bos], [w("wc"), w("wd")])


def test_empty_continuation_is_rejected(tiny):
    with pytest.raises(ValueError, match="at least one token"):
        evaluation.token_loglikelihoods(tiny, [([1, 2], [])])


def test_perplexity_matches_mean_nll(tiny, tokens):
    logp = tiny(tokens).log_softmax(-1)[:, :-1]
    nll = -logp.gather(-1, tokens[:, 1:, None]).mean()
    assert evaluation.perplexity(tiny, [tokens[:2], tokens[2:]]) == pytest.approx(math.exp(float(nll)), rel=1e-4)


def test_accuracy_needed_rule():
    assert evaluation.accuracy_needed(0.5, 100) == pytest.approx(0.6)
    assert evaluation.accuracy_needed(0.25, 48) == pytest.approx(0.25 + 2 * math.sqrt(0.25 * 0.75 / 48))


FACTS = pd.DataFrame(
    {"relation": ["capital_of"] * 5, "subject": list("ABCDE"),
     "prompt": [f"The capital of {c} is" for c in "ABCDE"], "target": ["Paris", "Rome", "Oslo", "Bern", "Lima"]}
)


def test_task_suite_is_seeded_and_labels_point_at_the_answer():
    suite = tasks.build_tasks(FACTS, 20, seed=3)
    assert suite == tasks.build_tasks(FACTS, 20, seed=3)
    assert set(suite) == {"factual_recall", "greater_than", "ioi", "agreement", "sequence"}
    for item in suite["factual_recall"]:
        assert item.choices[item.label].strip() == FACTS.set_index("prompt").target[item.context]
        assert len(set(item.choices)) == 4
    for item in suite["greater_than"]:
        start = int(item.context.split("year ")[1][2:4])
        assert int(item.choices[item.label]) > start > int(item.choices[1 - item.label])
    for item in suite["ioi"]:
        giver = item.context.split(", ")[1].split(" gave")[0]
        assert item.choices[item.label].strip() != giver and giver in item.context.split(",")[0]
    for item in suite["agreement"]:
        subject = item.context.split()[1]
        assert item.choices[item.label] == (" are" if subject.endswith("s") else " is")
    assert tasks.chance_level(suite["ioi"]) == 0.5 and tasks.chance_level(suite["sequence"]) == 0.25
    with pytest.raises(ValueError, match="n_items"):
        tasks.build_tasks(FACTS, 0)


def test_sequence_items_continue_the_run():
    rng = random.Random(0)
    for item in (tasks.sequence(rng) for _ in range(30)):
        words = [w.strip() for w in item.context.rstrip(",").split(",")]
        run = next(r for r in tasks.SEQUENCES if words[0] in r)
        assert item.choices[item.label].strip() == run[run.index(words[-1]) + 1]


def test_encode_pair_moves_trailing_space(embedded):
    ctx, cont = evaluation.encode_pair(embedded, "The capital of France is ", "Paris")
    assert embedded.tokenizer.decode(ctx) == "The capital of France is"
    assert embedded.tokenizer.decode(cont) == " Paris"


def test_multiple_choice_on_the_embedded_model(embedded):
    items = [tasks.MCItem("The Eiffel Tower is located in the city of", (" London", " Paris"), 1)]
    assert evaluation.multiple_choice(embedded, items) == {"acc": 1.0, "acc_norm": 1.0}


@pytest.mark.skipif(not evaluation.LM_EVAL_AVAILABLE, reason="lm-eval not installed")
def test_lm_eval_adapter_loglikelihoods_equal_the_models_own(embedded):
    # lm-eval is an optional heavy dependency: imported only by the tests that run when it is installed
    from lm_eval.api.instance import Instance

    lm = evaluation.HookedLM(embedded, batch_size=4)
    reqs = [Instance("loglikelihood", {}, ("The Eiffel Tower is in", " Paris"), 0),
            Instance("loglikelihood", {}, ("One, two,", " three"), 0)]
    got = lm.loglikelihood(reqs)
    for req, (ll, _greedy) in zip(reqs, got, strict=False):
        ctx = embedded.tokenizer(req.args[0], add_special_tokens=False)["input_ids"]
        whole = embedded.tokenizer("".join(req.args), add_special_tokens=False)["input_ids"]
        assert ll == pytest.approx(own_logprob(embedded, whole) - own_logprob(embedded, ctx), abs=1e-3)
    assert got[0][1] is True
    text = "Paris is the capital of France."
    ids = [embedded.tokenizer.eos_token_id] + embedded.tokenizer(text, add_special_tokens=False)["input_ids"]
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert rolling[0] == pytest.approx(own_logprob(embedded, ids), abs=1e-3)
    out = lm.generate_until([Instance("generate_until", {}, ("The capital of France is", {"until": ["."], "max_gen_toks": 5}), 0)])
    assert isinstance(out[0], str) and "." not in out[0]


@pytest.mark.skipif(not evaluation.LM_EVAL_AVAILABLE, reason="lm-eval not installed")
def test_lm_eval_runs_the_adapter_on_a_local_task_file(embedded, tmp_path, monkeypatch):
    """lm-eval's own evaluator, offline, on a two-item multiple-choice task written to a local file."""
    # lm-eval is an optional heavy dependency: imported only by the tests that run when it is installed
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = [{"context": "The Eiffel Tower is located in the city of", "choices": [" London", " Paris"], "label": 1},
             {"context": "Monday, Tuesday, Wednesday,", "choices": [" Thursday", " Sunday"], "label": 0}]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    (tmp_path / "local_mc.yaml").write_text(
        "task: local_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'items.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        'target_delimiter: ""\nmetric_list:\n  - metric: acc\n'
    )
    out = lm_eval.simple_evaluate(model=evaluation.HookedLM(embedded), tasks=["local_mc"],
                                  task_manager=TaskManager(include_path=str(tmp_path)), log_samples=True)
    ours = evaluation.loglikelihoods(embedded, [(i["context"], c) for i in items for c in i["choices"]])
    theirs = [resp[0] for s in out["samples"]["local_mc"] for resp in s["resps"]]
    assert [ll for ll, _ in theirs] == pytest.approx([ll for ll, _ in ours], abs=1e-4)
    expected = evaluation.multiple_choice(embedded, [tasks.MCItem(i["context"], tuple(i["choices"]), i["label"]) for i in items])
    assert out["results"]["local_mc"]["acc,none"] == expected["acc"]
