"""Parts 3 and 4 of `reference_parity.py`: one training step and 200 steps, Keras against
PyTorch from the same initial weights on the same batches, in float32 or in float64.

`Pair` holds the two sides: the library's model converted from the PyTorch network
(`SiameseChangeModel.from_torch_state_dict`, dropout 0) and compiled with
``compile(recipe="paper")``, and `torch_reference.TorchSide`, the notebook's training. With
``precision="float64"`` both run in float64 (`parity_float64`), where rounding is about 1e-9
of float32's, so what float32 rounding hides or amplifies shows as it is.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import tensorflow as tf
import torch
from parity_float64 import check_float64, exact_betas_of, float64_keras, use_float64_inputs
from torch import nn
from torch_reference import ReferenceNet, TorchSide, notebook_standardise

from siamese_cd import SiameseChangeModel
from siamese_cd.data.synthetic.generate import render_pair
from siamese_cd.models.recipe import epoch_schedule
from siamese_cd.models.torch_weights import keras_value, torch_slots

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def state_of(net: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def keras_layout(model, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A PyTorch state in the Keras model's layouts, by torch key."""
    return {slot.key: keras_value(slot.kind, state[slot.key]) for slot in torch_slots(model)}


def keras_state(model) -> dict[str, np.ndarray]:
    return {slot.key: slot.variable.numpy() for slot in torch_slots(model)}


def change_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


class Pair:
    """A Keras model and a PyTorch network with the same weights and the paper's training.

    With ``precision="float64"`` both sides compute and store in float64 (`parity_float64`).
    Two float32 roundings of the library's recipe would then be the only differences, and
    are taken out unless asked for: ``exact_betas`` gives Adam's betas to the bias
    corrections unrounded (`exact_betas`), and ``shared_rate`` gives PyTorch each step's
    learning rate from the Keras schedule, which keeps it in a float32 variable.
    """

    def __init__(
        self,
        variant: str,
        widths,
        pos_fraction: float,
        steps_per_epoch: int,
        seed: int,
        precision: str = "float32",
        exact_betas: bool = True,
        shared_rate: bool = True,
    ):
        torch.manual_seed(seed)
        self.precision = precision
        self.net = ReferenceNet(variant, 3, widths, dropout=0.0)
        state = state_of(self.net)
        self.net.to(PRECISIONS[precision])
        p = pos_fraction
        if precision == "float64":
            with float64_keras():
                self.model = SiameseChangeModel.from_torch_state_dict(state, variant, dropout=0.0)
                self.model.compile(recipe="paper")
            use_float64_inputs(self.model)
            check_float64(self.model)
            if exact_betas:
                exact_betas_of(self.model.optimizer)
        else:
            self.model = SiameseChangeModel.from_torch_state_dict(state, variant, dropout=0.0)
            self.model.compile(recipe="paper")
        self.shared_rate = shared_rate and precision == "float64"
        self.model.loss.pos_weight = (1 - p) / p
        epoch_schedule(self.model.optimizer).steps_per_epoch = steps_per_epoch
        self.torch = TorchSide(self.net, p, steps_per_epoch, PRECISIONS[precision])

    def learning_rate(self) -> float | None:
        """The Keras schedule's rate for the next step if PyTorch shares it, else None
        (PyTorch's own ExponentialLR)."""
        if not self.shared_rate:
            return None
        return float(np.asarray(self.model.optimizer.learning_rate))

    def torch_step(self, t1, t2, mask) -> float:
        return self.torch.step(t1, t2, mask, self.learning_rate())

    def keras_step(self, t1, t2, mask) -> float:
        return float(self.model.train_on_batch((t1, t2), mask, return_dict=True)["loss"])

    def keras_gradients(self, t1, t2, mask) -> dict[str, np.ndarray]:
        """Gradients of the compiled loss, BatchNorm's moving statistics left as they were."""
        model = self.model
        saved = [v.numpy() for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            y_pred = model((t1, t2), training=True)
            loss = model.compute_loss(x=(t1, t2), y=mask, y_pred=y_pred)
        grads = tape.gradient(loss, model.trainable_variables)
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
        by_path = {v.path: np.asarray(g) for v, g in zip(model.trainable_variables, grads)}
        return {
            s.key: by_path[s.variable.path]
            for s in torch_slots(model)
            if s.variable.path in by_path
        }

    def torch_gradients(self) -> dict[str, np.ndarray]:
        named = dict(self.net.named_parameters())
        grads = {k: p.grad.detach().numpy() for k, p in named.items()}
        return {
            s.key: keras_value(s.kind, grads[s.key])
            for s in torch_slots(self.model)
            if s.key in grads
        }

    def f1(self, t1, t2, mask) -> tuple[float, float]:
        """Change-F1 of the Keras model (p >= 0.5) and of the PyTorch network (argmax)."""
        keras_change = self.model.predict((t1, t2), verbose=0, batch_size=8)[..., 1] >= 0.5
        truth = mask[..., 0].astype(bool)
        return change_f1(keras_change, truth), change_f1(self.torch.change(t1, t2), truth)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| of one variable."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


# Conv biases followed by BatchNorm: their exact gradient is 0 (the batch mean removes them),
# so both frameworks return summation noise (about 1e-10) for them.
def _cancelled_by_batch_norm(key: str) -> bool:
    return key.startswith("conv") and key.endswith(".bias") and key != "conv11d.bias"


# Adam's first step is lr * g / (|g| + 1e-8), whose relative sensitivity to an error e of
# the gradient is e * 1e-8 / |g|**2: with the gradients' float32 summation noise (about 1e-9)
# it stays below 1e-5 where the total gradient (with the L2 term) is at least 1e-6. Those
# entries are "conditioned"; elsewhere rounding noise decides the step.
CONDITIONED = 1e-6


def compare_moves(before_k, after_k, before_t, after_t, t_grads, dtype=np.float32) -> dict:
    """How the two steps moved each variable (all in Keras layouts, by torch key).

    A difference within 2 spacings (of `dtype`) of the new weight is rounding of the stored
    weight, not a different step, and is not counted. ``"move"`` is the largest relative
    difference over conditioned entries, ``"move_all"`` over every entry.
    """
    moves, differing, unexplained, entries, move_all = {}, 0, 0, 0, 0.0
    for key in after_k:
        move_k, move_t = after_k[key] - before_k[key], after_t[key] - before_t[key]
        diff = np.abs(move_k - move_t)
        beyond = diff > 2 * np.spacing(np.abs(after_t[key]).astype(dtype))
        error = np.where(beyond, diff, 0.0) / max(float(np.abs(move_t).max()), 1e-30)
        if _cancelled_by_batch_norm(key):  # moved by L2 and gradient noise only
            conditioned = np.zeros(error.shape, bool)
        elif key in t_grads:
            conditioned = np.abs(t_grads[key] + 1e-4 * before_t[key]) >= CONDITIONED
        else:  # BatchNorm's moving statistics: no gradient
            conditioned = np.ones(error.shape, bool)
        if conditioned.any():
            moves[key] = float(error[conditioned].max())
        move_all = max(move_all, float(error.max()))
        off = error > 1e-4
        differing += int(off.sum())
        unexplained += int((off & conditioned).sum())
        entries += error.size
    worst = max(moves, key=moves.get)
    return {
        "move": moves[worst],
        "move_key": worst,
        "move_all": move_all,
        "differing": differing,
        "unexplained": unexplained,
        "entries": entries,
        "variables": len(after_k),
    }


def float64_gradients(pair: Pair, t1, t2, mask) -> dict[str, np.ndarray]:
    """The PyTorch gradients of the same step in float64, in Keras layouts: the reference
    that tells float32 rounding from a real difference."""
    net = copy.deepcopy(pair.net).double().train()
    x1, x2 = (torch.from_numpy(notebook_standardise(t).astype(np.float64)) for t in (t1, t2))
    weight = pair.torch.criterion.weight.double()
    target = torch.from_numpy(mask[..., 0].astype(np.int64))
    nn.NLLLoss(weight=weight)(net(x1, x2), target).backward()
    grads = {k: p.grad.numpy() for k, p in net.named_parameters()}
    return {
        s.key: keras_value(s.kind, grads[s.key]) for s in torch_slots(pair.model) if s.key in grads
    }


def one_step(
    variant: str, scenes, widths, seed: int, precision: str = "float32", **options
) -> dict[str, float | str]:
    """One `train_on_batch` against one PyTorch step from the same weights and batch;
    `options` go to `Pair`."""
    t1, t2, mask = (s[:4] for s in scenes)
    pair = Pair(variant, widths, float(mask.mean()), 1, seed, precision, **options)
    k_grads = pair.keras_gradients(t1, t2, mask)
    exact = float64_gradients(pair, t1, t2, mask)
    before_k = keras_state(pair.model)
    before_t = keras_layout(pair.model, state_of(pair.net))
    loss_t = pair.torch_step(t1, t2, mask)
    loss_k = pair.keras_step(t1, t2, mask)
    t_grads = pair.torch_gradients()
    after_k = keras_state(pair.model)
    after_t = keras_layout(pair.model, state_of(pair.net))
    kept = [k for k in t_grads if not _cancelled_by_batch_norm(k)]
    grad_err = {k: relative(k_grads[k], t_grads[k]) for k in kept}
    rounding = max(
        max(relative(t_grads[k], exact[k]), relative(k_grads[k], exact[k])) for k in kept
    )
    noise = max(float(np.abs(g).max()) for k, g in t_grads.items() if _cancelled_by_batch_norm(k))
    worst_grad = max(grad_err, key=grad_err.get)
    return {
        "loss": abs(loss_k - loss_t) / abs(loss_t),
        "grad": grad_err[worst_grad],
        "grad_key": worst_grad,
        "rounding": rounding,
        "noise": noise,
        **compare_moves(before_k, after_k, before_t, after_t, t_grads, np.dtype(precision)),
    }


def make_scenes(count: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    pairs = [render_pair(rng, size, change_rate=(0.3, 0.6)) for _ in range(count)]
    t1 = np.stack([p[0] for p in pairs])
    t2 = np.stack([p[1] for p in pairs])
    mask = (np.stack([p[2] for p in pairs])[..., None] >= 128).astype(np.float32)
    return t1, t2, mask


def nudged_copy(pair: Pair, seed: int) -> TorchSide:
    """The PyTorch side again, every initial weight moved to its next representable value
    (of the run's precision) up or down at random: the control for how far one rounding
    alone carries."""
    net = copy.deepcopy(pair.net)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            up = torch.randint(0, 2, parameter.shape, generator=generator).bool()
            away = torch.where(up, torch.inf, -torch.inf).to(parameter.dtype)
            parameter.copy_(torch.nextafter(parameter, away))
    side = pair.torch
    return TorchSide(net, side.pos_fraction, side.steps_per_epoch, side.dtype)


def curve_stats(losses: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    relative_diff = np.abs(losses - reference) / np.abs(reference)
    above = np.flatnonzero(relative_diff > 0.01)
    return {
        "max": float(relative_diff.max()),
        "last": float(relative_diff[-1]),
        "first_above": int(above[0]) + 1 if len(above) else None,
    }


def training_curves(
    variant: str,
    train,
    held_out,
    widths,
    steps: int,
    seed: int,
    precision: str = "float32",
    control: bool = True,
    **options,
):
    """Keras and PyTorch (and the nudged PyTorch control) over the same batch sequence of 4;
    `options` go to `Pair`."""
    t1, t2, mask = train
    batch = 4
    steps_per_epoch = len(t1) // batch
    pair = Pair(variant, widths, float(mask.mean()), steps_per_epoch, seed, precision, **options)
    twin = nudged_copy(pair, seed) if control else None
    order_rng = np.random.default_rng(seed)
    losses = {"keras": [], "torch": [], "control": []}
    started = time.perf_counter()
    for step in range(steps):
        if step % steps_per_epoch == 0:
            order = order_rng.permutation(len(t1))
        index = np.sort(order[(step % steps_per_epoch) * batch :][:batch])
        batch_data = (t1[index], t2[index], mask[index])
        rate = pair.learning_rate()  # before Keras's step moves its schedule on
        losses["torch"].append(pair.torch.step(*batch_data, rate))
        losses["keras"].append(pair.keras_step(*batch_data))
        if twin is not None:
            losses["control"].append(twin.step(*batch_data, rate))
    seconds = time.perf_counter() - started
    curves = {name: np.array(values) for name, values in losses.items() if values}
    result = {
        "keras": curve_stats(curves["keras"], curves["torch"]),
        "loss_last": (curves["keras"][-1], curves["torch"][-1]),
        "f1_train": pair.f1(*train),
        "f1_held_out": pair.f1(*held_out),
        "seconds": seconds,
    }
    if twin is not None:
        result["control"] = curve_stats(curves["control"], curves["torch"])
        result["control_last"] = curves["control"][-1]
        result["control_f1"] = tuple(
            change_f1(twin.change(*data[:2]), data[2][..., 0] > 0) for data in (train, held_out)
        )
    return result
