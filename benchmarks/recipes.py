"""The DeepCluster recipes the CPU benchmarks compare: the paper's and candidates that change a knob or
two of it. ``bench_recipe.py`` compares them on held-out training images; ``bench_deepcluster.py
--recipe NAME`` reports one on the test images."""
from __future__ import annotations

# Each recipe changes one or two knobs of the paper's (Sec. 3.4: lr 0.05, wd 1e-5, one pass per
# clustering); k, batch and crop scale start from bench_deepcluster's CPU settings.
PAPER = {"lr": 0.05, "k": 100, "weight_decay": 1e-5, "batch_size": 128, "train_passes": 1, "crop_scale": 0.3}
RECIPES = {
    "paper": {},
    "k300": {"k": 300},
    "lr0.1": {"lr": 0.1},
    "wd5e-4": {"weight_decay": 5e-4},
    "batch64": {"batch_size": 64},
    "passes2": {"train_passes": 2},
    "k300+wd5e-4": {"k": 300, "weight_decay": 5e-4},
    "lr0.1+k300": {"lr": 0.1, "k": 300},
    # Mustapha et al. (2022, Sec. 3.3) tuned these three for CIFAR-10 (with a smaller AlexNet).
    "study": {"lr": 0.1, "weight_decay": 1e-3, "batch_size": 64},
}


def recipe(name: str) -> dict:
    """The knobs of candidate ``name``: the paper's, with that candidate's changes."""
    return PAPER | RECIPES[name]
