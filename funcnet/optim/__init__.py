"""Optimizers and gradient transformations: pure ``(init, update)`` pairs over pytrees of params.

The contracts, stated once:

    Optimizer:          init(params) -> state
                        update(params, grads, state) -> (params, state)
    GradientTransform:  init(params) -> state
                        update(grads, state, params) -> (grads, state)

Nothing is written to: every update returns fresh arrays. An optimizer's state is a NamedTuple:
``count``, the number of updates made so far (a 0-d int32 array of the params' backend, so the
state traces under ``jax.jit``), then its named slots, trees shaped like params. ``lr`` is a
number or a schedule (`funcnet.schedules`), a function of ``count`` before the update; a
schedule's value is checked at every step where it is a host number (finite and >= 0, or a
ValueError naming the optimizer, the value and the step), never where it is traced or on a device.

* The built-in optimizers (`sgd`, `momentum`, `nesterov`, `adagrad`,
  `rmsprop`, `adam`) follow the book by default, the standard (optax, PyTorch) form
  through an argument; each is a per-leaf rule lifted by `from_rule`, the same public
  lifter users write their own with (`transform_from_rule` for transformations).
* Gradient transformations (`clip_by_global_norm`, `clip`,
  `add_decayed_weights`, `scale_by_schedule`, `scale_by_adam`, a function made
  one by `stateless`) go in front of an optimizer with `chain`, which keeps every
  part's state in a `ChainState`; `adamw` is such a chain. `with_clipping`
  keeps the optimizer's own state. `accumulate` steps every ``k`` calls on the mean
  gradient; `from_optax` makes any optax transformation an optimizer (jax backend).
* Host counts: on NumPy and array_api_strict the count is read as a Python int and the
  per-step scalars (lr, Adam's bias corrections) are Python floats, so both backends give the
  same bits; on CuPy and jax the count stays on its device and the scalars are 0-d arrays.
* Mixed precision: for float16 params the slots are float32 and each update is computed in
  float32, the new params cast back to float16 (a large gradient cannot overflow the state).
"""

from funcnet.optim.accumulation import AccumulateState, accumulate
from funcnet.optim.base import GradientTransform, LearningRate, Optimizer, Step, bias_correction
from funcnet.optim.interop import from_optax
from funcnet.optim.optimizers import (
    SGD,
    AdaGrad,
    AdaGradState,
    Adam,
    AdamState,
    Momentum,
    MomentumState,
    Nesterov,
    NesterovState,
    NesterovTraceState,
    RMSprop,
    RMSpropState,
    SGDState,
    adagrad,
    adam,
    adam_direction,
    momentum,
    nesterov,
    rmsprop,
    sgd,
)
from funcnet.optim.rules import from_rule, is_builtin, state_type, transform_from_rule
from funcnet.optim.transforms import (
    ChainState,
    ScaleByAdamState,
    ScaleByScheduleState,
    adamw,
    add_decayed_weights,
    chain,
    clip,
    clip_by_global_norm,
    clip_grads,
    scale_by_adam,
    scale_by_schedule,
    stateless,
    with_clipping,
)

__all__ = [
    "SGD", "AccumulateState", "AdaGrad", "AdaGradState", "Adam", "AdamState", "ChainState", "GradientTransform",
    "LearningRate", "Momentum", "MomentumState", "Nesterov", "NesterovState", "NesterovTraceState", "Optimizer",
    "RMSprop", "RMSpropState", "SGDState", "ScaleByAdamState", "ScaleByScheduleState", "Step", "accumulate",
    "adagrad", "adam", "adam_direction", "adamw", "add_decayed_weights", "bias_correction", "chain", "clip",
    "clip_by_global_norm", "clip_grads", "from_optax", "from_rule", "is_builtin", "momentum", "nesterov", "rmsprop",
    "scale_by_adam", "scale_by_schedule", "sgd", "state_type", "stateless", "transform_from_rule",
    "with_clipping",
]
