import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from utils import circuits
from utils import greater_than as G

WORDS = "The war lasted from the year to".split()


def tiny_tokenizer(number_piece: str, numbers: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose numbers split into pieces matching ``number_piece``."""
    vocab = {t: i for i, t in enumerate(["[UNK]", *WORDS, *numbers])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Split(Regex(number_piece), behavior="isolated"),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


@pytest.fixture(scope="module")
def gpt2_like():
    """Years as 'century' + 'YY' tokens, as GPT-2 writes them."""
    return tiny_tokenizer(r"\d\d", G.TWO_DIGITS)


@pytest.fixture(scope="module")
def llama_like():
    """Numbers as single digits, as SmolLM2 / Llama write them."""
    return tiny_tokenizer(r"\d", list(G.DIGITS))


def test_the_year_split_is_read_from_the_tokenizer(gpt2_like, llama_like):
    assert G.year_split(gpt2_like) == "two_digit" and G.year_split(llama_like) == "digits"
    assert gpt2_like.convert_ids_to_tokens(G.answer_tokens(gpt2_like, "two_digit"))[32] == "32"
    assert llama_like.convert_ids_to_tokens(G.answer_tokens(llama_like, "digits")) == list(G.DIGITS)
    with pytest.raises(ValueError, match="not single tokens"):
        G.answer_tokens(llama_like, "two_digit")


def test_a_tokenizer_that_writes_years_otherwise_is_refused():
    three_digits = tiny_tokenizer(r"\d\d\d|\d", [f"{n:03d}" for n in range(1000)] + list(G.DIGITS))
    with pytest.raises(ValueError, match="neither one two-digit token nor single digits"):
        G.year_split(three_digits)


def test_two_digit_probability_difference_counts_equal_years_as_earlier():
    probs = torch.zeros(3, 100)
    probs[0, 33], probs[1, 32], probs[2, [10, 90]] = 1.0, 1.0, 0.5
    start = torch.tensor([32, 32, 50])
    assert torch.equal(G.year_prob_diff(probs, start), torch.tensor([1.0, -1.0, 0.0]))


def test_probability_difference_picks_the_variant(gpt2_like):
    prompts = G.greater_than_prompts([32, 75])
    years = torch.zeros(2, 100)
    years[:, 60] = 1.0  # the end year 1760: later than 1732, earlier than 1775
    assert torch.equal(
        G.probability_difference(years, prompts, "two_digit"), torch.tensor([1.0, -1.0])
    )
    digits = torch.zeros(2, 10)
    digits[:, 6] = 1.0
    assert torch.equal(
        G.probability_difference(digits, prompts, "digits"), torch.tensor([1.0, -1.0])
    )


def test_circuits_keeps_the_names_it_had():
    assert circuits.prob_diff is G.prob_diff and circuits.GT_TEMPLATE == G.GT_TEMPLATE
    assert circuits.greater_than_prompts is G.greater_than_prompts
