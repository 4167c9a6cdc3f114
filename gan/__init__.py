"""GAN parts for text: mapping z -> w, a style-based transformer generator, a transformer
discriminator over vocabulary distributions, relaxations of discrete sampling, and losses.

- gan/mapping.py: StyleGAN mapping network and truncation trick.
- gan/generator.py: Generator, a latent-variable LM p(x_t | x_<t, z) with noise injection
  and style by cross-attention or AdaLN; teacher-forced `forward` (the LM protocol of
  baselines/) and free-running `sample` with a KV cache.
- gan/discriminator.py: Discriminator, a bidirectional transformer encoder on (B, T, V)
  distributions or (B, T) ids -> raw scores (B,).
- gan/encoder.py: PosteriorEncoder q(z | x), for pretraining the generator as a VAE decoder
  (so that it uses z) and as the proposal of its NLL estimate.
- gan/relax.py: what D sees of a fake (Gumbel-softmax, straight-through, softmax), beta schedules.
- gan/cnn_discriminator.py: SeqGAN's CNN discriminator with a highway layer over token ids or soft one-hots, and its loss.
- gan/seqgan.py: SeqGAN's policy gradient: sampling, Monte Carlo rollout rewards, REINFORCE, the rollout
  network's update.
- gan/relgan.py: RelGAN's Gumbel-softmax sampling of a recurrent LM (hard tokens fed back, soft one-hots for
  D) and its beta schedules (BETA_SCHEDULES).
- gan/ema.py: the moving average of the generator's weights, the copy a GAN run samples and evaluates.
- gan/losses.py: D and G losses as pure functions (LOSSES registry), gradient penalty, R1,
  InfoGAN's latent-recovery term, the VAE's KL with free bits.

Literal registries, keyed by the names a run's configuration chooses from: LOSSES
(name -> (D loss, G loss)), RELAXATIONS (name -> relaxation function) and STYLE_LAYERS
(GeneratorConfig.style_mode -> style layer class).
"""

from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.generator import STYLE_LAYERS, Generator, GeneratorConfig, NoiseInjection
from gan.ema import ema_update
from gan.encoder import PosteriorEncoder
from gan.losses import LOSSES, free_bits_kl, gaussian_kl, gradient_penalty, info_loss, r1_penalty
from gan.mapping import MappingConfig, MappingNetwork
from gan.relax import RELAXATIONS, beta_schedule, gumbel_softmax, real_inputs, softmax_relax, straight_through

__all__ = [
    "LOSSES", "RELAXATIONS", "STYLE_LAYERS",
    "Generator", "GeneratorConfig", "NoiseInjection",
    "Discriminator", "DiscriminatorConfig",
    "MappingNetwork", "MappingConfig",
    "gradient_penalty", "r1_penalty", "info_loss", "gaussian_kl", "free_bits_kl", "PosteriorEncoder",
    "ema_update", "beta_schedule", "gumbel_softmax", "softmax_relax", "straight_through", "real_inputs",
]
