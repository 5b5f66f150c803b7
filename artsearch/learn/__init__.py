"""Learning an art space (`artsearch learn`): tune the last stages of EfficientNet-Lite on
labelled pictures, so that works of one artist (and, more weakly, of one style) come
together in the style space, and write the tuned stages as a weights file a space is built
with (`artsearch index DIR --backbone efficientnet-lite0 --weights FILE`).

How. The stages before the tuned ones stay frozen: each work's maps at that depth are computed
once, for a plain view (what `artsearch index` sees) and a few augmented views (crops of
25-100 % and mirrors; no colour jitter, since colour is part of a style), and kept in memory
as float16. Epochs then run only the tuned stages over those maps, minutes on a CPU. The loss
is a supervised contrastive loss (Khosla et al. 2020) on the space's own vector (meanstd of
the style layers, each centred and of unit length): for each work, every other work in the
batch with the same main label (artist) is a positive of weight 1, one sharing only a weaker
label (style) a positive of its given weight. Batches hold several works of each main label.
A distillation term keeps the content vector (final-layer average) near the untuned
network's, so content search does not forget ImageNet.

Judged honestly. Main-label values (artists) are split in two by a seeded draw: the
validation artists' works are never trained on, and the epoch kept is the one with the best
same-artist mAP among them, against the untuned network's on the same works.

The weights file (`torch.save`, read with `weights_only=True`) holds the tuned stages'
tensors in float16, the base weights' SHA-256 they were tuned from, and what they learnt
from (labels, split, measures); `load_tuned` refuses a file that does not fit the backbone.
"""

from __future__ import annotations

from artsearch.backbones.tuned import WEIGHTS_FORMAT, load_tuned
from artsearch.learn.data import Work, read_corpus, split_by_label, works_from_index
from artsearch.learn.training import (
    LearnOptions,
    LearnResult,
    Prepared,
    average_precision,
    learn,
    prepare,
    save_tuned,
    train,
)

__all__ = ["WEIGHTS_FORMAT", "LearnOptions", "LearnResult", "Prepared", "Work",
           "average_precision", "learn", "load_tuned", "prepare", "read_corpus", "save_tuned",
           "split_by_label", "train", "works_from_index"]
