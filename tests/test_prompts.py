import pytest
import torch

from utils.data import load_facts
from utils.prompts import known_facts, logits_at, next_token_logits


@pytest.mark.embedded
def test_padded_batch_equals_single_prompts(embedded):
    prompts = ["The capital of France is", "Water is made of hydrogen and"]
    batched = next_token_logits(embedded, prompts)
    for row, prompt in enumerate(prompts):
        alone = embedded(embedded.to_tokens(prompt))[0, -1]
        torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.embedded
def test_known_facts_keeps_only_correct_top1(embedded):
    facts = load_facts().groupby("relation").head(3)
    known = known_facts(embedded, facts)
    assert 0 < len(known) <= len(facts)
    for row in known.itertuples():
        top = next_token_logits(embedded, [row.prompt])[0].argmax()
        assert embedded.to_string(top).strip() == embedded.to_string(int(row.target_token)).strip()
        assert row.target.startswith(embedded.to_string(int(row.target_token)).strip())


def test_logits_at_reads_one_position_per_row_with_hooks():
    from utils.hooks import zero_ablate
    from utils.models import tiny_model
    from utils.sublayers import Sublayer

    model = tiny_model(n_layers=2, d_vocab=50)
    tokens = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([6, 2, 4])
    hooks = zero_ablate([Sublayer(1, "mlp")])
    with torch.no_grad():
        full = model.run_with_hooks(tokens, fwd_hooks=hooks)[torch.arange(3), positions]
        torch.testing.assert_close(logits_at(model, tokens, positions, hooks), full)
        assert not torch.allclose(logits_at(model, tokens, positions), full)  # the hook did act, and is gone after
