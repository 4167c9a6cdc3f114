"""The exponential moving average of the generator's weights (StyleGAN's G_ema; stylegan2-pytorch's
`accumulate`), what a GAN run samples and evaluates: it smooths the oscillation of the
adversarial game."""

import torch


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter; buffers (the mapping's
    running w_avg) are copied, not averaged."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)
