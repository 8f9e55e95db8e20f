import pytest

from utils.cloze import ClozeItem, cloze_correct, last_word_items


def test_last_word_items_cut_before_the_last_sentence_final_word():
    texts = ["Paris is the capital of France. It is a large city and it", "no sentence end here", "Short. Yes."]
    items = last_word_items(texts)
    assert items == [ClozeItem("Paris is the capital of", " France"), ClozeItem("Short.", " Yes")]
    assert last_word_items(texts, limit=1) == items[:1]


def test_words_shorter_than_three_letters_or_with_digits_are_not_targets():
    assert last_word_items(["It was in 1999. We go."]) == []


def test_cloze_needs_items(tiny):
    with pytest.raises(ValueError, match="no cloze items"):
        cloze_correct(tiny, [], 16)
