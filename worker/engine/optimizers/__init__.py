"""Optimizers, sorted by increasing complexity: SGD; Adagrad, RMSprop, Adadelta; Adam,
AdamW, Adamax, NAdam; Lion; FTRL. Keras' names and defaults (the service fills them).

Each is a config (validated on construction), a state (a step counter, per-parameter
slot tensors, a few host numbers) and an update rule with two paths — a readable
per-tensor loop and a `torch._foreach_*` fast path, proven equal by
tests/engine/test_optimizers.py. The rules are torch.optim's, step for step, where
torch has the optimizer (where Keras and torch differ, fitq follows torch); Lion's is
the paper's and FTRL's Keras' (torch has neither). Each config's docstring gives the
rule and how the Keras names map onto torch.optim's arguments.

`weight_decay` follows the same line: torch's where torch has the optimizer — added to
the gradient (L2) for sgd, adagrad, rmsprop, adadelta, adam, adamax, nadam; decoupled
(p ← p − lr·wd·p) for adamw — and decoupled for lion and ftrl (the paper's, Keras').

Modules: `base` (the common keys, state, scalars), `sgd`, `adaptive`, `adam`, `lion`,
`ftrl` (the rules), `schedules` (learning-rate schedules), `clipping` (Keras' gradient
clipping), `optimizer` (`Optimizer`, `make_config`).

A config takes a normalized `compile.optimizer` as it is (docs/spec-contract.md): no
defaults here, every key present, none unknown. Its bounds are the ones the update
rule needs; momenta and β's lie in [0, 1): at 1 the average never forgets (SGD's and
RMSprop's buffer sums every gradient ever seen; Adam's bias correction divides by
1 − 1ᵗ = 0). torch.optim accepts momentum ≥ 1 and Keras momentum 1; fitq refuses it.
"""

from fitq.worker.engine.optimizers.adam import (
    AdamaxConfig,
    AdamConfig,
    AdamWConfig,
    NadamConfig,
    _adam_scalars,
    adam_slots,
    adam_update,
    adam_update_foreach,
)
from fitq.worker.engine.optimizers.adaptive import (
    AdadeltaConfig,
    AdagradConfig,
    RMSpropConfig,
    adagrad_slots,
    rmsprop_slots,
)
from fitq.worker.engine.optimizers.base import Config, Rule, State, Tensors
from fitq.worker.engine.optimizers.ftrl import FtrlConfig
from fitq.worker.engine.optimizers.lion import LionConfig
from fitq.worker.engine.optimizers.optimizer import (
    CONFIGS,
    RULES,
    Optimizer,
    make_config,
    slot_init,
)
from fitq.worker.engine.optimizers.sgd import SGDConfig, sgd_slots

__all__ = [
    "CONFIGS",
    "RULES",
    "AdadeltaConfig",
    "AdagradConfig",
    "AdamConfig",
    "AdamWConfig",
    "AdamaxConfig",
    "Config",
    "FtrlConfig",
    "LionConfig",
    "NadamConfig",
    "Optimizer",
    "RMSpropConfig",
    "Rule",
    "SGDConfig",
    "State",
    "Tensors",
    "_adam_scalars",
    "adagrad_slots",
    "adam_slots",
    "adam_update",
    "adam_update_foreach",
    "make_config",
    "rmsprop_slots",
    "sgd_slots",
    "slot_init",
]
