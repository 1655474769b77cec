"""Exactness check of continuous speculative decoding on the trained Fashion-MNIST MAR pair of
``benchmarks/continuous_speculative.py`` (run that first): 1,600 samples from the plain sampler and
1,600 from the speculative one (same MARSamplerConfig, final_noise 0.2, CFG 3, 16 iterations, 10
DDPM steps), compared per token coordinate (z of the mean difference, log variance ratio) and by the
reference classifier's accuracy on the decoded images.

    python benchmarks/continuous_speculative_exactness.py
"""
import time

import torch

torch.set_num_threads(1)
from artok.evaluation import get_reference_classifier
from artok.generators.mar.speculative import speculative_sample_mar
from artok.sampling import MARSamplerConfig
from artok.zoo import from_pretrained, sample

target = from_pretrained("runs/continuous_speculative/target").eval()
draft = from_pretrained("runs/continuous_speculative/draft").eval()
tok = from_pretrained("runs/generator_zoo/tokenizers/kl").eval()
clf = get_reference_classifier("fashion-mnist", progress=False)
cfg = MARSamplerConfig(iterations=16, steps=10, cfg_scale=3.0, final_noise=0.2)
labels = torch.arange(10).repeat_interleave(20)
def acc(values, labels):
    with torch.no_grad():
        imgs = tok.decode(values)
        return (clf(imgs).argmax(-1) == labels).float()
P, S, AP, AS = [], [], [], []
rng = torch.Generator().manual_seed(100)
t = time.time()
acc_stats = []
for rep in range(8):
    p = sample(target, labels, cfg, rng); P.append(p.values.flatten(1)); AP.append(acc(p, labels))
    o = speculative_sample_mar(target, draft, labels, cfg, draft_iterations=2, rng=rng)
    S.append(o.tokens.values.flatten(1)); AS.append(acc(o.tokens, labels)); acc_stats.append(o.stats.mean_accepted)
    print(rep, time.time() - t, flush=True)
P, S = torch.cat(P), torch.cat(S)
se = (P.var(0) / len(P) + S.var(0) / len(S)).sqrt()
z = (S.mean(0) - P.mean(0)) / se
print("coords", z.numel(), "max|z|", z.abs().max().item(), "mean z^2", (z ** 2).mean().item(), "mean z", z.mean().item())
lr = (S.var(0) / P.var(0)).log()
print("log var ratio: mean", lr.mean().item(), "max abs", lr.abs().max().item(), "se", (2 / len(P) + 2 / len(S)) ** 0.5)
ap, as_ = torch.cat(AP), torch.cat(AS)
print("acc plain", ap.mean().item(), "+-", (ap.var() / len(ap)).sqrt().item(), "spec", as_.mean().item(), "+-", (as_.var() / len(as_)).sqrt().item())
print("iters per pass", sum(acc_stats) / len(acc_stats))
