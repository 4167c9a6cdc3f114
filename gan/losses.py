"""GAN losses and regularisers as pure functions of discriminator outputs.

Every loss takes raw scores (logits), real (B,) and fake (B,), and returns a scalar to
minimise. D losses and G losses share the signature `fn(real, fake)` so that the trainer
can call any pair from LOSSES the same way; a G loss that does not need the real scores
ignores them (only the relativistic one uses them).

- standard: the non-saturating GAN (Goodfellow et al. 2014), in softplus form:
  D: softplus(-r) + softplus(f), G: softplus(-f).
- rsgan: the relativistic standard GAN (Jolicoeur-Martineau 2019) as RelGAN uses it:
  D: BCEWithLogits(r - f, 1) = softplus(f - r), G: BCEWithLogits(f - r, 1) = softplus(r - f),
  pairing the i-th real with the i-th fake.
- wgan-gp: the Wasserstein critic (Arjovsky et al. 2017) D: f - r, G: -f; needs
  `gradient_penalty` (Gulrajani et al. 2017) added to the D loss.
- hinge: D: relu(1 - r) + relu(1 + f), G: -f (Lim & Ye 2017; Miyato et al. 2018).

Regularisers take the discriminator itself, called as `D(inputs, mask) -> (B,)`, on
input distributions (B, T, V):
- gradient_penalty: weight * (||grad_x D(x)||_2 - 1)^2 at x between real and fake.
- r1_penalty (Mescheder et al. 2018): gamma / 2 * ||grad_x D(x)||^2 at real x.

And the latent-recovery term of InfoGAN (Chen et al. 2016), on Q's prediction of z:
- info_loss: 0.5 * mean over batch and dimensions of (z_pred - z)^2, the negative
  log-likelihood of z under Q(z | x) = N(z_pred, I) per dimension, up to the constant
  0.5 * log(2 pi). Minimised by D (training Q) and by G, it maximises the variational
  lower bound H(z) - E[-log Q(z | G(z))] on the mutual information I(z; G(z)): the
  generator is rewarded for writing sentences from which z can be read back, which is
  what makes z, and so the truncation trick, matter (MLE pretraining with z independent
  of the data leaves p(x | z) = p(x)).

And the KL term of VAE pretraining (gan/encoder.py):
- gaussian_kl: KL(N(mean, diag exp(logvar)) || N(0, I)) per sentence and dimension.
- free_bits_kl: the KL with "free bits" (Kingma et al. 2016): per dimension, the batch
  mean of the KL, but never less than free_bits / z_dim, summed over dimensions. Below the
  target the KL costs nothing, so the encoder passes at least about free_bits nats of
  information about the sentence and the decoder cannot profit from ignoring z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_standard(real, fake):
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss_standard(real, fake):
    return F.softplus(-fake).mean()


def d_loss_rsgan(real, fake):
    return F.binary_cross_entropy_with_logits(real - fake, torch.ones_like(real))


def g_loss_rsgan(real, fake):
    return F.binary_cross_entropy_with_logits(fake - real, torch.ones_like(fake))


def d_loss_wgan(real, fake):
    return fake.mean() - real.mean()


def g_loss_wgan(real, fake):
    return -fake.mean()


def d_loss_hinge(real, fake):
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_loss_hinge(real, fake):
    return -fake.mean()


# name -> (D loss, G loss); "wgan-gp" also needs gradient_penalty added to the D loss
LOSSES = {
    "standard": (d_loss_standard, g_loss_standard),
    "rsgan": (d_loss_rsgan, g_loss_rsgan),
    "wgan-gp": (d_loss_wgan, g_loss_wgan),
    "hinge": (d_loss_hinge, g_loss_hinge),
}


def info_loss(z_pred, z):
    """InfoGAN's term for a continuous latent with a fixed unit-variance Gaussian Q:
    0.5 * mean_{b,d} (z_pred - z)^2 (nats per dimension, without the 0.5 log 2 pi constant)."""
    if z_pred.shape != z.shape:
        raise ValueError(f"predicted z {tuple(z_pred.shape)} and z {tuple(z.shape)} must have one shape")
    return 0.5 * (z_pred.float() - z.float()).pow(2).mean()


def gaussian_kl(mean, logvar):
    """KL(N(mean, diag exp(logvar)) || N(0, I)), (B, D): 0.5 * (mean^2 + exp(logvar) - 1 - logvar)."""
    return 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float())


def free_bits_kl(kl, free_bits: float = 0.0):
    """kl (B, D) -> sum_d max(mean_b kl[b, d], free_bits / D): the free-bits KL term, nats per sentence."""
    return kl.mean(dim=0).clamp(min=free_bits / kl.size(-1)).sum()


def _input_grad(D, x, mask):
    """x (B, T, V) -> grad of sum_b D(x)_b w.r.t. x, (B, T, V), kept in the graph for backward."""
    x = x.detach().requires_grad_(True)
    scores = D(x, mask)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad


def gradient_penalty(D, real, fake, mask=None, weight: float = 10.0, alpha=None, generator=None):
    """WGAN-GP (Gulrajani et al. 2017): weight * mean_b (||grad_x D(x_b)||_2 - 1)^2.

    real (B, T, V) one-hot rows (`relax.real_inputs`), fake (B, T, V) distributions from
    `Generator.sample`, both detached here; x = alpha * real + (1 - alpha) * fake with
    alpha ~ U(0, 1) per sentence (or the given (B,) alpha). mask (B, T): the positions D
    reads, normally real_mask | fake_mask; the norm runs over the whole (T, V) input and
    positions D does not read contribute zero gradient.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have one shape; "
                         "sample the fake with max_len equal to the real batch's T")
    if alpha is None:
        alpha = torch.rand(real.size(0), generator=generator, device=real.device, dtype=real.dtype)
    alpha = alpha.reshape(-1, 1, 1)  # (B, 1, 1)
    x = alpha * real.detach() + (1.0 - alpha) * fake.detach()  # (B, T, V)
    grad = _input_grad(D, x, mask)
    norm = grad.flatten(1).norm(2, dim=1)  # (B,)
    return weight * (norm - 1.0).pow(2).mean()


def r1_penalty(D, real, mask=None, gamma: float = 10.0):
    """R1 (Mescheder et al. 2018): gamma / 2 * mean_b ||grad_x D(x_b)||^2 at the real inputs (B, T, V)."""
    grad = _input_grad(D, real, mask)
    return 0.5 * gamma * grad.flatten(1).pow(2).sum(dim=1).mean()
