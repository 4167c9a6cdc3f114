"""Autoregressive language models, all behind one protocol.

Every model here:
- lives in its own file with a `@dataclass` config whose `vocab_size` and `block_size`
  default to 0 and are filled from the dataset before the model is built;
- is built as `Model(config)` and exposes `model.block_size` (the context it conditions on);
- implements `forward(idx, targets=None) -> (logits, loss)`: idx (B, T) long token ids,
  logits (B, T, V), loss the mean cross-entropy over targets != IGNORE_INDEX (-1), or None
  (`baselines.loss.lm_loss`, which the GAN generator uses too);
- is causal: the logits at position t depend only on idx[:, :t+1];
- may implement incremental decoding, `init_cache(batch_size)` plus
  `forward(idx_new, cache=cache)`, which the sampler then uses (KV cache, RNN state);
- may be fitted in closed form: a model with `closed_form = True` (the count bigram) has
  no trainable parameters and is trained by `model.fit(batches)`, not by an optimizer;
- says `batch_statistics = True` when its training forward normalises by the batch's own
  statistics (BatchNorm: the MLP with batchnorm, WaveNet): the trainer then draws its batches at
  random, since batches of lines of one length would skew those statistics against the running
  ones used at evaluation (datasets/batching.py).

MODELS is a literal registry: name -> (model class, config class).
"""

from baselines.bigram import Bigram, BigramConfig, CountBigram, CountBigramConfig
from baselines.bow import BoW, BoWConfig
from baselines.gpt2 import GPT, GPTConfig
from baselines.mlp import MLP, MLPConfig
from baselines.rnn import GRUConfig, LSTMConfig, RecurrentLM, RNNConfig
from baselines.wavenet import WaveNet, WaveNetConfig

MODELS = {
    "bigram": (CountBigram, CountBigramConfig),
    "bigram-neural": (Bigram, BigramConfig),
    "mlp": (MLP, MLPConfig),
    "wavenet": (WaveNet, WaveNetConfig),
    "rnn": (RecurrentLM, RNNConfig),
    "gru": (RecurrentLM, GRUConfig),
    "lstm": (RecurrentLM, LSTMConfig),
    "bow": (BoW, BoWConfig),
    "gpt2": (GPT, GPTConfig),
}
