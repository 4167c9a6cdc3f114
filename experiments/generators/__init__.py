"""The generators a comparison trains, samples and scores, seen from outside their trainers.

    generation.py  a trained LM or GAN back from its checkpoint file alone, and seeded decoded
                   samples from it (what the trainers, sample, sample_gan, score and the
                   comparison all use)
    families.py    FAMILIES: lm, gan, seqgan, relgan; how each is trained, reused and sampled
                   (the protocol a new generator family implements)
    guidance.py    a discriminator trained post hoc on one generator's samples, and that
                   generator's sampler guided by it (rejection sampling, SIR)
"""
