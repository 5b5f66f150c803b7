"""Transfer-learning classification: a linear probe or a fine-tune, calibrated, with a report.

Two ways to reuse a pretrained network for a catalogue field with few labelled works:

- probe: multinomial logistic regression on the vectors already stored in a space (nothing
  is re-extracted); the inverse regularisation C is chosen by stratified cross-validation on
  the training split (log-loss). Seconds.
- finetune: the backbone is rebuilt, frozen up to a named layer (`freeze_until`), and the
  rest trained together with a new linear head at a low learning rate (AdamW; the head at
  10x), with light augmentation (a random crop of up to 15% more than the model sees, and a
  horizontal flip), a class-balanced cross-entropy, and early stopping on the validation
  loss. The head starts from the probe's weights ("linear probe, then fine-tune": with a
  ready head the early gradients do not scramble the pretrained features). Minutes.

Both train on a stratified split with a fixed seed: train / validation / test (60/20/20 by
default; a class keeps at least one work in validation and test). Classes with fewer than
`min_per_class` labelled works are left out and reported: too few to learn from and to test.
A temperature is then fitted on the validation split (scaling the logits so the predicted
probabilities match the observed accuracy); the expected calibration error before and after
is recorded, and the test split gives the final, untouched figures.

A model file (torch.save of plain tensors and values, read with weights_only=True) holds the
backbone, its weights' SHA-256, the space, layers, pooling and its fitted parameters, the
preprocessing, the label set, the head, the temperature, the fine-tuned weights when there are
any, the training parameters and the metrics. It refuses to run on other backbone weights.
"""

from artsearch.classify._base import (
    CS,
    ECE_BINS,
    FORMAT,
    UNCERTAIN,
    LabelledSet,
    ModelError,
    TrainOptions,
)
from artsearch.classify.calibration import (
    ece,
    fit_probe,
    fit_temperature,
    nll,
    reliability,
    scores,
    softmax,
)
from artsearch.classify.data import labelled_works, stratified_split
from artsearch.classify.finetune import Network, default_freeze, finetune, used_parameters
from artsearch.classify.model import Classifier, load_model
from artsearch.classify.training import TrainResult, train

__all__ = [
    "CS", "ECE_BINS", "FORMAT", "UNCERTAIN", "Classifier", "LabelledSet", "ModelError",
    "Network", "TrainOptions", "TrainResult", "default_freeze", "ece", "finetune", "fit_probe",
    "fit_temperature", "labelled_works", "load_model", "nll", "reliability", "scores",
    "softmax", "stratified_split", "train", "used_parameters",
]
