"""datasets/bpe.py: byte-level BPE with TextDuel's specials in front (ids shifted by four).

The corpus is made here (seeded pseudo-words in sentences), never downloaded. If
image_coco.txt is in the data directory, one test prints how long fit + encode_batch of
all its lines takes on one thread (printed, not asserted: run with -s to see it)."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import pre_tokenizers

from datasets.bpe import BPETokenizer
from datasets.tokenizers import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID

REPO = Path(__file__).resolve().parent.parent

ROUND_TRIPS = [
    "",
    "a man riding a wave on top of a surfboard .",
    "\ufeffa text that starts with a byte-order mark",
    "nul\x00bell\x07tab\there\r\nwindows line\nunix line",
    "emoji 😀 family 👨‍👩‍👧‍👦 thumbs 👍🏽👍🏿 flag 🏳️‍🌈 keycap 1️⃣",
    "café naïve Ærø Straße, привет мир, 你好世界, こんにちは, مرحبا بالعالم, नमस्ते दुनिया",
    " leading space", "trailing space ", "   multiple   spaces   ", " ", "\n\n",
    "a literal <eos> and <pad> and <bos> and <unk> in text",
    "GPT-2's end token <|endoftext|> is only text here<|endoftext|>",
    "never seen in training: ᚠᛇᚻ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 한국어 ꙮ \U0010fffd \u200b\u2028",
    "The Cat's 3 DOGS'll run... 12,345.67 -- $5!",
]


def make_corpus(n_sentences: int = 400, seed: int = 0) -> list[str]:
    """Seeded sentences of pseudo-words (some accented, some capitalised, some Cyrillic)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "é", "zu", "an", "or", "ви", "да", "str", "qu"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(600)]
    words += ["the", "a", "of", "and", "in", "on", "with", "is"] * 20  # frequent words, as in real text
    out = []
    for _ in range(n_sentences):
        sent = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        out.append(sent.capitalize() + rng.choice([".", "!", "?", ",", " ..."]))
    return out


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


@pytest.fixture(scope="module")
def tok(corpus):
    return BPETokenizer.fit(corpus, vocab_size=512)


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip_any_string(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i >= len(SPECIALS) for i in ids)  # literal "<eos>" etc. are bytes, not specials
    assert tok.n_bytes(text) == len(text.encode("utf-8"))


def test_specials_in_front_and_never_encoded(tok):
    assert tok.level == "bpe"
    assert tok.itos[:4] == list(SPECIALS) and [tok.stoi[s] for s in SPECIALS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    assert len(tok.itos) == len(tok.stoi) == tok.vocab_size  # no two symbols share an id
    assert all(tok.stoi[s] == i for i, s in enumerate(tok.itos))
    ids = [i for t in ROUND_TRIPS for i in tok.encode(t)]
    assert min(ids) >= 4 and max(ids) < tok.vocab_size
    # the 256 bytes are ids 4..259, so nothing is ever <unk>
    assert set(tok.itos[4:260]) == set(pre_tokenizers.ByteLevel.alphabet())
    # GPT-2's regex cuts "<" from letters, so no merge can even spell a special
    assert tok.split("<eos>")[0] == "<" and tok.split("<eos>")[-1] == ">"
    assert not any(s in tok.stoi for s in ("Ġ<eos>", "<eos>Ġ", "<|endoftext|>"))


def test_split_and_encode_batch_agree_with_encode(tok, corpus):
    texts = corpus[:50] + ROUND_TRIPS
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    for t in texts:
        assert [tok.stoi[s] for s in tok.split(t)] == tok.encode(t)
    assert tok.split(" the") == ["Ġthe"]  # a frequent word is one token, its space shown as "Ġ"


def test_decode_stops_at_eos_drops_padding_and_shows_unk(tok):
    a, b = tok.encode("the cat"), tok.encode(" sat")
    assert tok.decode([BOS_ID] + a + [EOS_ID] + b + [PAD_ID]) == "the cat"
    assert tok.decode([BOS_ID] + a + [EOS_ID] + b + [PAD_ID], stop_at_eos=False) == "the cat sat"
    assert tok.decode(a + [UNK_ID] + b) == "the cat<unk> sat"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_vocab_size_as_requested_and_at_most_it_on_tiny_corpus(tok):
    assert tok.vocab_size == 512
    tiny = BPETokenizer.fit(["hello world", "hello there"], vocab_size=1000)
    assert 260 < tiny.vocab_size < 1000  # ran out of pairs to merge
    assert BPETokenizer.fit(["hello world"], vocab_size=260).vocab_size == 260  # bytes only, no merges


def test_merges_compress_the_training_text(tok, corpus):
    n_ids = sum(len(ids) for ids in tok.encode_batch(corpus))
    n_bytes = sum(tok.n_bytes(t) for t in corpus)
    assert n_bytes / n_ids > 1.5


def test_state_dict_and_save_load_are_identical(tok, corpus, tmp_path):
    again = BPETokenizer.from_state(tok.state_dict())
    assert again.state_dict() == tok.state_dict() and again.itos == tok.itos
    path = tok.save(tmp_path)
    assert path == tmp_path / "tokenizer.json"
    loaded = BPETokenizer.load(path)
    assert loaded.itos == tok.itos and loaded.state_dict() == tok.state_dict()
    assert loaded.save(tmp_path / "again.json").read_bytes() == path.read_bytes()
    texts = corpus[:20] + ROUND_TRIPS
    assert again.encode_batch(texts) == loaded.encode_batch(texts) == tok.encode_batch(texts)
    json.loads(path.read_text(encoding="utf-8"))  # Hugging Face's format: plain JSON
    with pytest.raises(ValueError, match="level"):
        BPETokenizer.from_state({"level": "word", "itos": list(SPECIALS)})


def test_deterministic_across_fresh_processes_and_thread_counts(corpus, tmp_path):
    (tmp_path / "corpus.json").write_text(json.dumps(corpus), encoding="utf-8")
    code = ("import json, sys; from datasets.bpe import BPETokenizer; "
            "BPETokenizer.fit(json.load(open(sys.argv[1], encoding='utf-8')), vocab_size=512).save(sys.argv[2])")
    files = []
    for name, threads in (("default", None), ("one_thread", "1")):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("RAYON_NUM_THREADS", None)
        if threads:
            env["RAYON_NUM_THREADS"] = threads
        out = tmp_path / f"{name}.json"
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "corpus.json"), str(out)],
                       cwd=REPO, env=env, check=True)
        files.append(out.read_bytes())
    here = BPETokenizer.fit(corpus, vocab_size=512).save(tmp_path / "here.json").read_bytes()
    assert files[0] == files[1] == here


def test_lowercase(corpus):
    low = BPETokenizer.fit(corpus, vocab_size=400, lowercase=True)
    assert low.encode("The CAT Sat") == low.encode("the cat sat")
    assert low.decode(low.encode("Привет, Мир")) == "привет, мир"
    assert low.n_bytes("ÀB") == len("àb".encode("utf-8"))
    merges = [low.decode([i]) for i in range(260, low.vocab_size)]  # learnt from lowered text: no capitals
    assert merges and all(m == m.lower() for m in merges)
    again = BPETokenizer.from_state(low.state_dict())
    assert again.lowercase and again.encode("ABC") == low.encode("abc")


def test_bad_inputs_fail_loudly(tok):
    with pytest.raises(ValueError, match="at least 260"):
        BPETokenizer.fit(["some text"], vocab_size=259)
    with pytest.raises(TypeError, match="not a single str"):
        BPETokenizer.fit("some text")
    with pytest.raises(ValueError, match="lone surrogate"):
        tok.encode("bad \ud800 text")
    with pytest.raises(ValueError, match="text 1 .*lone surrogate"):
        tok.encode_batch(["fine", "bad \udfff"])


def test_foreign_tokenizer_json_with_special_tokens_is_refused(tok):
    spec = json.loads(tok.state_dict()["tokenizer_json"])
    spec["added_tokens"] = [{"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}]
    with pytest.raises(ValueError, match="added tokens"):
        BPETokenizer(json.dumps(spec))
    spec = json.loads(tok.state_dict()["tokenizer_json"])
    spec["pre_tokenizer"]["add_prefix_space"] = True
    with pytest.raises(ValueError, match="add_prefix_space"):
        BPETokenizer(json.dumps(spec))


def test_coco_timing_one_thread(real_file):
    """Prints (does not assert) fit + encode_batch of all of COCO's lines at vocab 2048 on one thread."""
    code = ("import sys, time; from datasets.bpe import BPETokenizer; "
            "lines = open(sys.argv[1], encoding='utf-8').read().splitlines(); t0 = time.perf_counter(); "
            "tok = BPETokenizer.fit(lines, vocab_size=2048); ids = tok.encode_batch(lines); "
            "dt = time.perf_counter() - t0; nb = sum(map(tok.n_bytes, lines)); n = sum(map(len, ids)); "
            "print(f'COCO {len(lines)} lines: fit + encode_batch {dt:.2f} s on one thread, vocab {tok.vocab_size}, '"
            "f'{nb / n:.2f} bytes per token')")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAYON_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(real_file("image_coco.txt"))], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True)
    print(res.stdout.strip())
