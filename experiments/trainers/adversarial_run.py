"""What every GAN trainer's run does alike (trainers/gan.py, and SeqGAN's and RelGAN's through
trainers/recurrent_gan.py): collapse warnings against real data, and the final scoring of the
generator a run ends with beside the pretrained one it started from.

A run class that inherits AdversarialRun provides cfg (seed, final_samples, collapse_*), session,
corpus, tokenizer, G, pre_path (the pretrained generator's checkpoint), adv_start_nll (val NLL
where the adversarial phase began, None before), nll(gen, split) and draw(gen, n, seed)."""

from __future__ import annotations

import copy
import random

from experiments.core.checkpoint import load_checkpoint
from experiments.scoring.nll import bits_per_byte
from experiments.scoring.samples import SampleEvaluator, collapse_warnings

NLL_KEYS = ("nll", "nll_posterior")  # what nll(gen, split) may return that the final results keep


class AdversarialRun:

    def nll_rise(self, val_nll: float) -> float | None:
        """Relative rise of the val NLL since the adversarial phase began (None before it)."""
        return val_nll / self.adv_start_nll - 1 if self.adv_start_nll else None

    def warn_collapse(self, scores: dict, real: dict, val_nll: float, step: int) -> list[str]:
        """Collapse warnings against real data (and, adversarial phase, the val NLL at its start):
        printed, logged as TensorBoard text; returns them."""
        cfg = self.cfg
        found = collapse_warnings(scores, real, self.nll_rise(val_nll), cfg.collapse_self_bleu, cfg.collapse_unique,
                                  cfg.collapse_nll)
        for w in found:
            self.session.say(f"warning: step {step}: {w}")
        if found:
            self.session.log.text("warnings", "  \n".join(found), step)
        return found

    def final_extras(self, gen) -> dict:
        """Per-generator figures a trainer adds to its final results (the GAN: its latent use)."""
        return {}

    def score_finals(self, results: dict, final: str, gen) -> dict[str, list[str]]:
        """The final generator (named `final` in the results) and, where pretraining ran, the
        pretrained one: val and test NLL and cfg.final_samples samples scored against test (read
        here, once), added to results with the adversarial phase's NLL rise and the final
        generator's collapse warnings; -> the samples by generator name."""
        cfg = self.cfg
        tester = SampleEvaluator(self.corpus, self.tokenizer, references="test")
        texts = {}
        for name, g in self.final_generators(final, gen).items():
            for split in ("val", "test"):
                nll = self.nll(g, split)
                results.update({f"{name}/{split}_{k}": nll[k] for k in NLL_KEYS if k in nll})
                lines = self.data.byte_texts(split)
                if lines is not None and "tokens" in nll:  # one scale across vocabularies: bits per byte
                    results[f"{name}/{split}_bpb"] = bits_per_byte(nll["nll"] * nll["tokens"], lines)
            results.update({f"{name}/{k}": v for k, v in self.final_extras(g).items()})
            # a copy: a truncating draw estimates the average style into the generator it is given
            texts[name] = self.draw(copy.deepcopy(g), cfg.final_samples, seed=cfg.seed)
            results.update({f"{name}/{k}": v for k, v in tester.score(texts[name]).items()})
        n_real = min(cfg.final_samples, len(self.corpus.train))
        real_test = tester.score(random.Random(cfg.seed).sample(self.corpus.train, n_real))
        scores = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith(f"{final}/")}
        val_nll = results[f"{final}/val_nll"]
        results["adv_nll_rise"] = self.nll_rise(val_nll)
        results["warnings"] = self.warn_collapse(scores, real_test, val_nll, self.step)
        return texts

    def final_generators(self, final: str, gen) -> dict:
        """{final: gen}, and the pretrained generator (from pre_path) where pretraining ran."""
        finals = {final: gen}
        if self.pre_path.exists():
            pretrained = copy.deepcopy(self.G)
            pretrained.load_state_dict(load_checkpoint(self.pre_path)["model"])
            finals["pretrained"] = pretrained.eval()
        return finals
