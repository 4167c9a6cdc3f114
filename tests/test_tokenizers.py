import pytest
import torch

from datasets.tokenizers import (BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, CharTokenizer, Tokenizer,
                                 WordTokenizer)


def test_special_ids_are_fixed():
    tok = CharTokenizer.fit(["abc"])
    assert [tok.stoi[s] for s in SPECIALS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID] == [0, 1, 2, 3]


def test_char_round_trip_and_deterministic_ids():
    texts = ["emma", "olivia", "ava", "zoë"]
    a, b = CharTokenizer.fit(texts), CharTokenizer.fit(list(reversed(texts)))
    assert a.itos == b.itos  # ids depend on the symbol set only, not on order
    for t in texts:
        assert a.decode(a.encode(t)) == t


def test_word_round_trip_on_space_separated_text():
    texts = ["a man riding a wave on top of a surfboard .", "two dogs , one cat"]
    tok = WordTokenizer.fit(texts)
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    assert tok.split("a bicycle replica with a clock as the front wheel.")[-2:] == ["wheel", "."]


def test_lowercasing_and_unknown_symbols():
    tok = WordTokenizer.fit(["The Cat sat"], lowercase=True)
    assert tok.encode("the CAT") == tok.encode("The cat")
    assert tok.encode("the dog")[-1] == UNK_ID
    assert tok.decode(tok.encode("the dog")) == "the <unk>"


def test_vocabulary_from_training_texts_only():
    tok = CharTokenizer.fit(["ab"])
    assert "z" not in tok.stoi and tok.encode("z") == [UNK_ID]


def test_decode_stops_at_eos_and_skips_padding():
    tok = CharTokenizer.fit(["ab"])
    a, b = tok.stoi["a"], tok.stoi["b"]
    assert tok.decode([BOS_ID, a, b, EOS_ID, a, PAD_ID]) == "ab"


def test_state_round_trip():
    tok = WordTokenizer.fit(["x y z"], lowercase=True)
    again = Tokenizer.from_state(tok.state_dict())
    assert type(again) is WordTokenizer and again.itos == tok.itos and again.lowercase


def test_collisions_and_reserved_symbols_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer(list(SPECIALS) + ["a", "a"])
    with pytest.raises(ValueError, match="must start with the special tokens"):
        CharTokenizer(["x"])
    with pytest.raises(ValueError, match="reserved"):
        # the regex splits '<pad>' into '<', 'pad', '>' at word level, so use a custom split
        class Whole(WordTokenizer):
            def split(self, text):
                return text.split()
        Whole.fit(["hello <pad>"])
