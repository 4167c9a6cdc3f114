"""`messages`: a seeded, generated corpus of short chat-style messages (no download).

What it is for: benchmarking and testing TextDuel on a corpus that is *not* one of the
shipped ones, a stand-in for a user's own file (`--dataset OUT_DIR/train.txt --test_file
OUT_DIR/test.txt`). Unlike names, numbers or COCO it has what users' text has: mixed case
(sentence-initial capitals, names, some ALL-CAPS), punctuation (. , ! ? ... ' " : ; -),
contractions, numbers, times and prices, a few emoji, accented words (é, ü, ñ), @handles,
#hashtags and URL-like tokens, a vocabulary with a long Zipfian tail (many words seen
once, test words never seen in training), and a heavy tail of line lengths. It contains
no byte-order mark, no control characters and no empty lines: tests of bad input add
those themselves.

How it is made (pure Python, `random` only): a "language" drawn from the seed, a few
hundred real English function and common words (most of the frequency mass) plus a
Zipfian vocabulary of 30,000 pronounceable pseudo-words built from syllables (shorter
words more frequent, some capitalised as proper nouns, some accented), and names; then
messages drawn from it: short reactions, one to four sentences, and now and then a long
rambling message of 50-195 tokens. The train and test files share the language and
differ in the stream of messages (separate seeds), so they are different messages from
one distribution. The same seed gives byte-identical files.

Statistics of the default corpus (seed 0, 10,000 train and 1,000 test lines), measured
with `WordTokenizer(SPECIALS, lowercase=True).split` (`\\w+|[^\\w\\s]`), which is also
what the generator counts; targets, then what seed 0 gives:
- mean 20-22 tokens a line (21.0; median 19); most lines 3-30 tokens (83%);
- the longest 180-200 (193), in a tail heavy enough that `datasets.batching.check_lengths`
  accepts the corpus without --max_len (the longest at most OUTLIER_RATIO x the
  99.9th-percentile length, here 135): about 0.35% long rambling messages of 50-195 tokens,
  and 177 lines over 48 tokens in all;
- at least 15,000 distinct lowercased types in train (17,792), and a few percent of the
  test tokens unseen in train (4.5% of all tokens, 5.7% of word tokens).
Generating both files takes about 0.4 s. `python -m datasets.messages OUT_DIR` prints
these figures for any seed.

Command:

    python -m datasets.messages OUT_DIR [--seed 0] [--n_train 10000] [--n_test 1000]
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from datasets.batching import typical_length
from datasets.tokenizers import SPECIALS, WordTokenizer

SPLIT_STREAMS = ("train", "val", "test")  # each split draws its messages from its own seed stream
N_PSEUDO = 30_000     # pseudo-words in a language
# Zipf-Mandelbrot weights 1 / (rank + q) ** s: common words, and the flatter pseudo-word tail
# (about 17,800 train types and 4-5% test OOV at the default size)
COMMON_S, PSEUDO_S, ZIPF_Q = 1.0, 0.9, 2.7
P_REACTION = 0.04     # share of one- or two-word reactions ("lol", "sounds good 👍")
P_RAMBLING = 0.0035   # share of long rambling messages (the heavy tail of lengths)
MESSAGE_TOKENS = (2.96, 0.42)   # other messages: their target length is lognormal(mu, sigma) tokens, median e^mu
RAMBLING_TOKENS = (50, 195)   # their target length in tokens
MAX_TOKENS = 199      # no message is longer

# Real English words in rough order of frequency in chat; they carry most of the mass.
# "I" forms are written capitalised (lowercase-only writers drop the case and the apostrophe).
COMMON = """
I you the to a and it is that of in for me my on so this be have just but was not with we are do
what at can if get all no like know it's I'm don't up out go now how your will about one they when
there good time yeah ok lol see think he she her him got back want did from or going love today day
more really need some them then would come well who an as right too can't here make why by oh much
also over after still home new work been tomorrow night say tell thanks yes sure didn't that's
you're I'll let where people because way could should very thing last first been off ever any
something us our nice great sorry hope before next week morning tonight later soon maybe please
always never again any lot little bit big long other into only even still take give look feel said
those these its their his has had were were being than which am doing done made went told call
friend friends guys man girl fun happy miss wait stop start help best better pretty actually
probably already though anyway yet around since while until every each most same both few many
keep try put find mean ask show leave bring hear play watch read talk eat sleep drive run pay buy
place house car phone game movie food party school class job office room city weekend year month
hour minute thank okay hey hi hello bye haha omg idk tbh btw wow cool awesome funny crazy weird
true real hard easy late early fine bad old young free open busy ready tired hungry sick glad
isn't wasn't won't wouldn't couldn't shouldn't doesn't aren't haven't I've I'd you'll you've
we're they're there's what's let's he's she's who's here's
yesterday someone everyone nothing everything anything somebody maybe almost enough else
another together away down through between under without against during already sometimes
usually often really totally literally basically honestly seriously definitely
""".split()

REACTIONS = ("lol", "ok", "OK", "k", "thanks!", "Thanks!", "haha yes", "omg 😂", "sounds good 👍", "no way!",
             "see you!", "yep", "nope", "Same", "LOL", "❤", "wow", "sure thing", "on my way", "love it 😍",
             "good night!", "Good morning ☀", "np", "ty", "ikr", "true", "me too", "hahaha", "what?!", "omw", "brb",
             "Congrats!! 🎉", "Happy birthday! 🎂", "ok cool", "yes please", "no worries", "Nice.", "wait what", "🙏",
             "😂😂😂", "fair enough", "same here", "all good", "got it, thanks", "I'm in", "count me in")
NAMES = ("Anna", "Marco", "José", "Zoë", "Liam", "Emma", "Noah", "Olivia", "Chloé", "Renée", "Lukas", "Jürgen",
         "Sofía", "Begoña", "Mateo", "Priya", "Arjun", "Mei", "Kenji", "Fatima", "Omar", "Ava", "Ethan", "Mia",
         "Lucas", "Isabella", "Jack", "Grace", "Sam", "Alex", "Jordan", "Taylor", "Chris", "Kate", "Tom", "Ben",
         "Lucy", "Max", "Ella", "Leo", "Nina", "Hugo", "Inès", "Björn", "Søren", "Dani", "Rosa", "Pedro")
ACCENTED = ("café", "jalapeño", "naïve", "über", "résumé", "señor", "fiancée", "déjà", "vu", "piñata", "müsli",
            "crème", "brûlée", "niño", "mañana", "jalapeños", "entrée", "soirée", "Zürich", "München", "España",
            "São", "Paulo", "Montréal", "Québec", "Düsseldorf", "Málaga", "crêpes", "rosé", "cliché")
EMOJI = ("😂", "👍", "🙂", "🎉", "🔥", "😅", "🙏", "😭", "🤔", "💯", "😍", "🙄", "😊", "😎", "🤣", "👀", "💀", "✨", "🥲", "😬", "🍕",
         "☕", "⚽", "🎶")
OPENERS = ("Note:", "Update:", "FYI:", "PS:", "Reminder:", "Question:", "Quick one:", "Update -", "UPDATE:", "btw,",
           "So,", "Anyway,", "Honestly,", "Ok so", "Hey,", "Hi all,", "Guys,", "Well,")
CONNECTORS = ("and", "but", "so", "then", "because", "and then", "also", "or", "anyway", "like")
EMPHASIS = ("SO", "NOT", "OMG", "LOL", "NEVER", "ASAP", "REALLY", "YES", "NO", "WHY", "WAY", "TODAY", "FREE")

ONSETS = ("", "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
          "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc", "sh", "sk", "sl", "sm", "sn",
          "sp", "st", "str", "th", "tr", "tw", "wh", "qu")
NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "oo", "ou", "ie", "oa", "au", "y")
CODAS = ("", "", "", "", "n", "r", "l", "s", "t", "m", "nd", "st", "ng", "rk", "nt", "ck", "sh", "th", "x", "ld")
SIMPLE_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "th", "st", "nd")
SIMPLE_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ee", "ou")
ACCENTS = {"e": "é", "u": "ü", "n": "ñ", "o": "ö", "a": "á", "i": "í"}


@dataclass(frozen=True)
class Language:
    """The vocabulary a seed draws; every split of one seed uses the same one."""

    common: tuple[str, ...]
    common_cum: tuple[float, ...]   # cumulative Zipf weights over `common`
    pseudo: tuple[str, ...]         # by frequency rank
    pseudo_cum: tuple[float, ...]
    names: tuple[str, ...]          # real names, then pseudo-names


def _cumulative(n: int, s: float) -> tuple[float, ...]:
    total, out = 0.0, []
    for r in range(1, n + 1):
        total += 1.0 / (r + ZIPF_Q) ** s
        out.append(total)
    return tuple(out)


def _pseudo_word(rng: random.Random, n_syllables: int) -> str:
    """A pronounceable word: a free first syllable, then consonant-vowel syllables, a coda at the end."""
    word = rng.choice(ONSETS) + rng.choice(NUCLEI)
    for _ in range(n_syllables - 1):
        word += rng.choice(SIMPLE_ONSETS) + rng.choice(SIMPLE_NUCLEI)
    return word + rng.choice(CODAS)


@functools.lru_cache(maxsize=4)
def language(seed: int) -> Language:
    """The language of `seed`: common words, Zipf-ranked pseudo-words (short ones frequent), names."""
    rng = random.Random(f"textduel-messages:{seed}:language")
    taken = {w.lower() for w in COMMON + list(ACCENTED)} | {n.lower() for n in NAMES}
    pseudo = []
    while len(pseudo) < N_PSEUDO:
        rank = len(pseudo) + 1
        # frequent words are short: 1-2 syllables near the top of the ranking, up to 4 in the tail
        n_syllables = max(1, min(4, round(math.log10(rank + 9) * rng.uniform(0.4, 0.95))))
        word = _pseudo_word(rng, n_syllables)
        if len(word) < 2 or word in taken:
            continue
        if rng.random() < 0.02:  # accented spelling (é, ü, ñ, ...)
            i = rng.randrange(len(word))
            word = word[:i] + ACCENTS.get(word[i], word[i]) + word[i + 1:]
            if word in taken:
                continue
        taken.add(word)
        if rng.random() < 0.05:  # a proper noun: places, brands, always capitalised
            word = word.capitalize()
        pseudo.append(word)
    names = list(NAMES)
    while len(names) < 400:
        name = _pseudo_word(rng, rng.choice((2, 2, 3))).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            names.append(name)
    common = list(dict.fromkeys(COMMON + list(ACCENTED)))  # accented real words ride in the common list's tail
    return Language(tuple(common), _cumulative(len(common), COMMON_S), tuple(pseudo),
                    _cumulative(N_PSEUDO, PSEUDO_S), tuple(names))


class _Writer:
    """Draws the messages of one split from its own seeded stream."""

    def __init__(self, lang: Language, rng: random.Random):
        self.lang, self.rng = lang, rng
        self.count = WordTokenizer(list(SPECIALS)).split

    def common(self) -> str:
        return self.rng.choices(self.lang.common, cum_weights=self.lang.common_cum)[0]

    def pseudo(self) -> str:
        return self.rng.choices(self.lang.pseudo, cum_weights=self.lang.pseudo_cum)[0]

    def name(self) -> str:
        rng = self.rng
        return self.lang.names[min(int(rng.paretovariate(1.1)) - 1, len(self.lang.names) - 1)
                               if rng.random() < 0.6 else rng.randrange(len(self.lang.names))]

    def number(self) -> str:
        rng, kind = self.rng, self.rng.random()
        if kind < 0.35:
            return str(rng.choice((1, 2, 2, 3, 3, 4, 5, 5, 6, 10, 10, 12, 15, 20, 30)))
        if kind < 0.5:
            return str(rng.randint(1, 100))
        if kind < 0.6:
            return str(rng.randint(1990, 2025))
        if kind < 0.72:
            if rng.random() < 0.6:
                return f"{rng.randint(1, 12)}:{rng.choice(('00', '15', '30', '45'))}"
            return f"{rng.randint(1, 12)}{rng.choice(('pm', 'am'))}"
        if kind < 0.84:
            if rng.random() < 0.6:
                return f"${rng.randint(2, 300)}"
            return f"${rng.randint(1, 50)}.{rng.randint(0, 99):02d}"
        if kind < 0.92:
            return f"{rng.choice((5, 10, 20, 25, 50, 90, 100))}%"
        day = rng.randint(1, 31)
        return f"{day}{'th' if 10 <= day <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"

    def handle(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return "@" + self.name().lower() + (str(rng.randint(1, 99)) if rng.random() < 0.5 else "")
        return "@" + self.pseudo().lower() + rng.choice(("_", "", ".")) + self.pseudo().lower()

    def url(self) -> str:
        rng = self.rng
        site = self.pseudo().lower() + rng.choice(("", "", self.pseudo().lower()))
        tld = rng.choice((".com", ".com", ".org", ".io", ".net", ".co.uk", ".de"))
        if rng.random() < 0.3:
            return "www." + site + tld
        path = "/".join(self.pseudo().lower() for _ in range(rng.randint(1, 2)))
        return rng.choice(("https://", "http://", "https://")) + site + tld + "/" + path

    def word(self, lowercase_only: bool) -> str:
        rng, u = self.rng, self.rng.random()
        if u < 0.58:
            w = self.common()
        elif u < 0.955:
            w = self.pseudo()
        elif u < 0.975:
            w = self.name()
        elif u < 0.993:
            w = self.number()
        elif u < 0.996:
            w = self.handle()
        elif u < 0.998:
            w = "#" + self.pseudo().lower()
        else:
            w = rng.choice(EMOJI)
        if lowercase_only:
            return w.lower().replace("'", "") if rng.random() < 0.7 else w.lower()
        if rng.random() < 0.012:
            return w.upper()
        if rng.random() < 0.003:
            return rng.choice(EMPHASIS)
        return w

    def sentence(self, lowercase_only: bool, n_words: int) -> str:
        rng = self.rng
        words = [self.word(lowercase_only) for _ in range(n_words)]
        if n_words >= 4 and rng.random() < 0.04:  # a quoted phrase
            i = rng.randrange(n_words - 1)
            j = min(n_words - 1, i + rng.randint(0, 3))
            words[i], words[j] = '"' + words[i], words[j] + '"'
        out = []
        for k, w in enumerate(words):
            out.append(w)
            if k < n_words - 1:
                v = rng.random()
                if v < 0.07:
                    out[-1] += ","
                elif v < 0.08:
                    out.append("-")
                elif v < 0.084:
                    out[-1] += ";"
                elif v < 0.09 and w[:1].isupper() and w[1:].isalpha() and w[1:].islower():  # Anna's
                    out[-1] += "'s"
        if rng.random() < 0.06:
            out.insert(0, rng.choice(OPENERS))
        if rng.random() < 0.03:
            out.insert(0, rng.choice(CONNECTORS))
        text = " ".join(out)
        if not lowercase_only and text[0].isalpha() and rng.random() < 0.9:
            text = text[0].upper() + text[1:]
        end = rng.choices((".", "!", "?", "...", "!!", "?!", "", " :)"), (40, 13, 16, 7, 3, 2, 19, 1))[0]
        return text + end

    def n_words(self) -> int:
        return max(1, min(30, round(self.rng.lognormvariate(2.05, 0.45))))

    def fill(self, target: int, lowercase_only: bool, n_words) -> list[str]:
        """Sentences of about n_words() words until the message has about `target` tokens (at most MAX_TOKENS)."""
        parts, n = [], 0
        while n < target - 1:
            # the last sentence is cut to the tokens left (a word is about 1.2 tokens with its punctuation)
            s = self.sentence(lowercase_only, min(n_words(), max(1, round((target - n - 1) / 1.2))))
            k = len(self.count(s))
            if n + k > MAX_TOKENS:
                break
            parts.append(s)
            n += k
        return parts

    def message(self) -> str:
        rng = self.rng
        u = rng.random()
        if u < P_REACTION:
            return rng.choice(REACTIONS)
        lowercase_only = rng.random() < 0.15
        if u < P_REACTION + P_RAMBLING:  # run-on sentences, a long message
            return " ".join(self.fill(rng.randint(*RAMBLING_TOKENS), lowercase_only, lambda: rng.randint(6, 22)))
        target = max(2, round(rng.lognormvariate(*MESSAGE_TOKENS)))
        return self.decorate(" ".join(self.fill(target, lowercase_only, self.n_words)), lowercase_only)

    def decorate(self, text: str, lowercase_only: bool) -> str:
        """Message-level extras: a reply @handle, a link, trailing emoji, SHOUTING."""
        rng = self.rng
        if rng.random() < 0.04:
            text = self.handle() + " " + text
        if rng.random() < 0.012:
            text = text + " " + self.url()
        if rng.random() < 0.07:
            text = text + " " + rng.choice(EMOJI) * rng.choice((1, 1, 1, 2, 3))
        if not lowercase_only and rng.random() < 0.006:
            text = text.upper()
        return text


def generate(n_lines: int, seed: int, *, split: str = "train") -> list[str]:
    """n_lines messages of the language of `seed`, drawn from the message stream of `split`
    (train, val, test: same language, different messages). Deterministic."""
    if split not in SPLIT_STREAMS:
        raise ValueError(f"split must be one of {SPLIT_STREAMS}, got {split!r}")
    if n_lines < 0:
        raise ValueError(f"n_lines must be >= 0, got {n_lines}")
    writer = _Writer(language(seed), random.Random(f"textduel-messages:{seed}:{split}"))
    return [writer.message() for _ in range(n_lines)]


def write_corpus(out_dir, seed: int = 0, n_train: int = 10_000, n_test: int = 1_000) -> tuple[Path, Path]:
    """Write OUT_DIR/train.txt and OUT_DIR/test.txt (UTF-8, one message a line); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", n_train), ("test", n_test)):
        path = out / f"{split}.txt"
        path.write_text("\n".join(generate(n, seed, split=split)) + "\n", encoding="utf-8", newline="\n")
        paths.append(path)
    return paths[0], paths[1]


def corpus_statistics(train: list[str], test: list[str]) -> dict:
    """Word-level figures (lowercased WordTokenizer) of a train and a test list of lines."""
    split = WordTokenizer(list(SPECIALS), lowercase=True).split
    tr = [split(line) for line in train]
    te = [split(line) for line in test]
    lengths = [len(t) for t in tr]
    seen = {w for t in tr for w in t}
    test_tokens = [w for t in te for w in t]
    return {
        "lines": len(train),
        "test_lines": len(test),
        "mean_tokens": sum(lengths) / len(lengths),
        "longest": max(lengths),
        "p99_9": typical_length(lengths),
        "over_48": sum(n > 48 for n in lengths),
        "types": len(seen),
        "test_oov": sum(w not in seen for w in test_tokens) / len(test_tokens),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.messages",
                                     description="Write a seeded corpus of short messages: OUT_DIR/train.txt "
                                                 "and OUT_DIR/test.txt, and print their statistics.")
    parser.add_argument("out_dir", help="folder to write train.txt and test.txt into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=10_000)
    parser.add_argument("--n_test", type=int, default=1_000)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    train_path, test_path = write_corpus(args.out_dir, args.seed, args.n_train, args.n_test)
    seconds = time.perf_counter() - t0
    print(train_path)
    print(test_path)
    s = corpus_statistics(train_path.read_text(encoding="utf-8").splitlines(),
                          test_path.read_text(encoding="utf-8").splitlines())
    print(f"seed {args.seed}: {s['lines']:,} train and {s['test_lines']:,} test lines in {seconds:.2f} s; "
          f"word tokens a line (lowercased): mean {s['mean_tokens']:.1f}, 99.9th percentile {s['p99_9']}, "
          f"longest {s['longest']} ({s['over_48']} lines over 48); {s['types']:,} train types; "
          f"test tokens unseen in train {s['test_oov']:.1%}")


if __name__ == "__main__":
    main()
