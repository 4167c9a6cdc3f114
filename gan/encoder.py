"""The posterior network q(z | x) for pretraining the generator as a VAE decoder.

Why it exists: MLE pretraining with z drawn from the prior, independently of the sentence,
is optimal exactly when p(x | z) = p(x) (by Jensen, E_z[-log p(x | z)] >= -log E_z p(x | z),
with equality only when z is ignored), so the generator learns to ignore z and the
truncation trick has nothing to truncate. Pretraining instead as the decoder of a
variational autoencoder (Kingma & Welling 2014; for sentences Bowman et al. 2016,
"Generating Sentences from a Continuous Space") gives z a job: z ~ q(z | x), the
generator reconstructs x from it, and KL(q(z | x) || N(0, I)) keeps the posteriors close
to the prior the GAN samples from. A strong autoregressive decoder can still ignore z
(posterior collapse); "free bits" (Kingma et al. 2016, "Improved Variational Inference
with Inverse Autoregressive Flow") remove the KL penalty below a target of `free_bits`
nats per sentence, so the encoder is free to pass that much information and the decoder
gains by using it. See gan.losses.gaussian_kl and free_bits_kl.

Architecture: the discriminator's bidirectional transformer encoder (gan/discriminator.py)
over the sentence's token ids, <eos> included, padding masked, CLS pooling, then a linear
head giving the mean and log-variance of a diagonal Gaussian over z. The head starts at
zero, so q(z | x) starts as the prior N(0, I) and KL as 0.

The encoder serves only pretraining and, afterwards, as the importance-sampling proposal
of the NLL estimate (posterior_nll in experiments/scoring/nll.py): the GAN samples z from
the prior.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from datasets.tokenizers import IGNORE_INDEX, PAD_ID
from gan.discriminator import Discriminator, DiscriminatorConfig


class PosteriorEncoder(nn.Module):
    def __init__(self, config: DiscriminatorConfig, z_dim: int):
        """config: the transformer encoder's sizes (a DiscriminatorConfig; its score head goes
        unused and is dropped); z_dim: the mapping network's z_dim."""
        super().__init__()
        if z_dim <= 0:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.config = dataclasses.replace(config, spectral_norm=False)
        self.z_dim = z_dim
        self.body = Discriminator(self.config)
        del self.body.head  # features() only: the posterior head below replaces the score
        self.to_posterior = nn.Linear(self.config.n_embd, 2 * z_dim)
        nn.init.zeros_(self.to_posterior.weight)  # q(z | x) = N(0, I) at initialisation
        nn.init.zeros_(self.to_posterior.bias)

    def forward(self, ids, mask):
        """ids (B, T) token ids, mask (B, T) True at the sentence's tokens -> mean, logvar (B, z_dim)."""
        mean, logvar = self.to_posterior(self.body.features(ids, mask)).chunk(2, dim=-1)
        # bounded log-variance: exp() of an unbounded head overflows on a bad step
        return mean, logvar.clamp(-12.0, 6.0)

    def posterior(self, y):
        """q(z | x) from a batch of targets y (B, T), IGNORE_INDEX after each sentence's <eos>
        (the LM batches' layout) -> mean, logvar (B, z_dim)."""
        valid = y != IGNORE_INDEX
        return self(y.masked_fill(~valid, PAD_ID), valid)

    @staticmethod
    def sample(mean, logvar, generator: torch.Generator | None = None):
        """z = mean + sigma * eps (the reparameterisation trick), eps ~ N(0, I)."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * eps
