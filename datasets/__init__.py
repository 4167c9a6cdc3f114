"""Corpora, tokenizers and batching for TextDuel.

Note: this package is named `datasets`, which shadows Hugging Face's `datasets` package
when you run from the repository root. Nothing in TextDuel imports Hugging Face's.
Data code never imports models or run configuration.
"""

from datasets.batching import LMData, build_tokenizer
from datasets.corpora import CORPORA, Corpus, CorpusError, DataConfig, load_corpus
from datasets.tokenizers import BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, UNK_ID, CharTokenizer, Tokenizer, WordTokenizer
