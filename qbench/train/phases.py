"""The per-epoch schedule of a run: phase, trained parameters, learning rate and temperatures.

The paper trains in three phases (Sec. 4.1): weights only, activations only with the weights
fixed, then both "until the model converges", and gives one lr schedule and T = k x epoch per
network, but not how they continue across phases. Our reading (docs/recipes.md):

- **lr restarts in every phase**: each phase runs the run's lr schedule compressed to the phase's
  length (milestone m of a run of E epochs falls after round(m x L / E) epochs of an L-epoch
  phase): our choice, so that each phase gets the whole schedule (the paper says only that the
  last phase trains until the model converges). A single-phase run is the paper's schedule
  unchanged.
- **T counts the epochs each quantizer has trained**: weight quantizers count the weights and
  joint epochs, activation quantizers the activations and joint epochs. Activation quantizers so
  start soft (T = k) instead of at T = k x 36, and the weights keep the T they reached in
  phase 1 while fixed in phase 2.

The trainers (classification and detection) and the generated recipe tables read this module, so
what docs/recipes.md says is what runs: ``configure_phase`` is the one place that switches the
quantizers and the trained parameters of a phase, for the classification trainer and the
detection hooks alike, through the run's quantization method (``qbench.quant.QuantMethod``).
Temperatures exist only for methods that use one (``QuantMethod.uses_temperature``); the
method's ``on_epoch`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PHASES = ("fp", "weights", "activations", "joint")
# phase -> (weight quantizers on, activation quantizers on)
SWITCHES = {"fp": (False, False), "weights": (True, False), "activations": (True, True),
            "joint": (True, True)}


def trained_groups(phase: str, weights: bool, activations: bool) -> tuple[str, ...]:
    """Names of the parameter groups that train in ``phase`` (Alg. 1).

    Args:
        phase: one of PHASES.
        weights: the run quantizes weights.
        activations: the run quantizes activations.
    """
    if phase == "fp":
        return ("network",)
    if phase == "weights":
        return ("network", "weight quantizers") if weights else ("network",)
    if phase == "activations":
        return ("activation quantizers",)
    return tuple(g for g, on in (("network", True), ("weight quantizers", weights),
                                 ("activation quantizers", activations)) if on)


def phase_problem(model, phases: list[str], method) -> str | None:
    """Why ``phases`` cannot train ``model`` quantized by ``method``, or None.

    The activations phase trains only the input quantizers' parameters; a method whose input
    quantizers learn nothing (a fixed clipping range) would train no parameter there.
    """
    if method is not None and "activations" in phases and not method.parameters(model, "activations"):
        return (f"epochs.activations: method {method.name!r} learns no input-quantizer parameters, "
                "so that phase would train nothing; use joint epochs")
    return None


def configure_phase(model, phase: str, method) -> list:
    """Switch the quantizers and the trained parameters of ``model`` for ``phase`` (Alg. 1).

    weights: the network's parameters and the weight quantizers' train, activation quantizers
    are off; activations: both quantizers on, only the activation quantizers' parameters train
    (the weights are fixed); joint and fp: everything trains (an FP run has no quantizers).
    BatchNorm layers are network parameters, and stay in training mode in every phase (the
    trainers call ``model.train()``), so their statistics follow the quantized activations.

    Args:
        model: the model (quantized or not).
        phase: one of PHASES.
        method: the model's quantization method (``qbench.quant.QuantMethod``, as returned by
            ``quantize_``); None for a full-precision model, which only has "fp" epochs.

    Returns:
        The parameters that train in this phase, in model order.
    """
    if phase not in SWITCHES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if method is None and phase != "fp":
        raise ValueError(f"phase {phase!r} needs the model's quantization method (a full-precision "
                         "model has only fp epochs)")
    w_on, a_on = SWITCHES[phase]
    act_ids: set[int] = set()
    if method is not None:
        if phase != "fp":
            method.set_enabled(model, weights=w_on, activations=a_on)
        act_ids = {id(p) for p in method.parameters(model, "activations")}
    trained = []
    for p in model.parameters():
        if phase == "weights":
            on = id(p) not in act_ids
        elif phase == "activations":
            on = id(p) in act_ids
        else:
            on = True
        p.requires_grad_(on)
        if on:
            trained.append(p)
    return trained


def phase_milestones(milestones: list[int], length: int, total: int) -> list[int]:
    """Milestones of one phase: the run's milestones compressed from ``total`` to ``length``
    epochs (each at least 1 epoch in; those past the phase end are dropped).

    Args:
        milestones: lr milestones of the run (epochs after which lr is multiplied by gamma).
        length: epochs of the phase.
        total: epochs of the whole run.
    """
    if length == total:
        return [m for m in milestones if m < length]
    out = sorted({max(1, int(m * length / total + 0.5)) for m in milestones})
    return [m for m in out if m < length]


@dataclass(frozen=True)
class EpochPlan:
    """What one 1-based epoch does.

    Args:
        epoch: epoch of the run.
        phase: fp, weights, activations or joint.
        phase_epoch: 1-based epoch within the phase.
        lr: learning rate (of the quantized layers' parameters in detection runs).
        t_weights: T of the weight quantizers (None: no weight quantizers, or off).
        t_activations: T of the activation quantizers (None: none, or off in this phase).
        trained: parameter groups that train.
        run_epochs: epochs of the whole run (a method whose schedule spans the run, such as
            staged weight freezing, reads it).
    """

    epoch: int
    phase: str
    phase_epoch: int
    lr: float
    t_weights: float | None
    t_activations: float | None
    trained: tuple[str, ...]
    run_epochs: int = 1


def epoch_plan(config: Any) -> list[EpochPlan]:
    """The schedule of every epoch of a run config (classification ``Config`` or detection
    ``DetectRunConfig``: sections epochs, optim, temperature, quant).

    Args:
        config: a validated run config.
    """
    from qbench.quant import get_method

    e, o, t, q = config.epochs, config.optim, config.temperature, config.quant
    # a method without a temperature (quant.method) gets no T in its plan
    tempered = get_method(q.method).uses_temperature
    lengths = {p: int(getattr(e, p)) for p in PHASES}
    total = sum(lengths.values())
    w_schedule, a_schedule = t.schedule("weights"), t.schedule("activations")
    w_quant, a_quant = q.weights is not None, q.activations is not None
    plan: list[EpochPlan] = []
    w_epochs = a_epochs = 0  # epochs each kind of quantizer has trained so far
    epoch = 0
    for phase in PHASES:
        miles = phase_milestones(list(o.milestones), lengths[phase], total)
        w_on, a_on = SWITCHES[phase]
        for k in range(1, lengths[phase] + 1):
            epoch += 1
            lr = o.lr * o.gamma ** sum(1 for m in miles if k > m)
            if w_quant and phase in ("weights", "joint"):
                w_epochs += 1
            if a_quant and phase in ("activations", "joint"):
                a_epochs += 1
            t_w = w_schedule.value(w_epochs) if tempered and w_quant and w_on and w_epochs else None
            t_a = a_schedule.value(a_epochs) if tempered and a_quant and a_on and a_epochs else None
            plan.append(EpochPlan(epoch, phase, k, lr, t_w, t_a,
                                  trained_groups(phase, w_quant, a_quant), total))
    return plan
