"""FC-EF / FC-Siam-diff / FC-Siam-conc in PyTorch, written from the published facts.

For `reference_parity.py`: Daudt et al. (ICIP 2018) and the authors' code
(rcdaudt/fully_convolutional_change_detection), whose parameter names (``conv11``, ``bn11``,
..., ``upconv4``, ``conv43d``, ..., ``conv11d``) this network keeps, so its ``state_dict``
is one of theirs: Conv2d 3x3 padding 1 -> BatchNorm2d -> ReLU -> Dropout2d per unit, 2, 2, 3,
3 units per level, 2x2 max-pooling; per decoder level ConvTranspose2d(k=3, stride=2,
padding=1, output_padding=1), replication padding to the skip's size, concatenation with the
skip (|x1 - x2| for diff, x1 and x2 for conc, the plain skip for ef), ConvTranspose2d(k=3,
padding=1) units, and a 2-class head with LogSoftmax. The decoder starts from the second
date's bottleneck. `TorchSide` trains it as the authors' notebook does, on inputs
standardised as the notebook does (`notebook_standardise`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

PUBLISHED_WIDTHS = (16, 32, 64, 128)
CONVS = (2, 2, 3, 3)


class ReferenceNet(nn.Module):
    """FC-EF / FC-Siam-diff / FC-Siam-conc as published, parameters named as the authors'."""

    def __init__(self, variant: str, bands: int, widths=PUBLISHED_WIDTHS, dropout: float = 0.2):
        super().__init__()
        self.variant, self.widths, self.dropout = variant, tuple(widths), dropout
        channels = 2 * bands if variant == "ef" else bands
        for level, (width, convs) in enumerate(zip(widths, CONVS), start=1):
            for k in range(1, convs + 1):
                self.add_module(f"conv{level}{k}", nn.Conv2d(channels, width, 3, padding=1))
                self.add_module(f"bn{level}{k}", nn.BatchNorm2d(width))
                channels = width
        skips = 2 if variant == "conc" else 1
        for level in range(len(widths), 0, -1):
            up = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
            self.add_module(f"upconv{level}", up)
            channels += skips * widths[level - 1]
            for k in range(CONVS[level - 1], 0, -1):
                if level == 1 and k == 1:
                    self.conv11d = nn.ConvTranspose2d(channels, 2, 3, padding=1)
                    break
                out = widths[level - 2] if k == 1 else widths[level - 1]
                self.add_module(f"conv{level}{k}d", nn.ConvTranspose2d(channels, out, 3, padding=1))
                self.add_module(f"bn{level}{k}d", nn.BatchNorm2d(out))
                channels = out

    def unit(self, name: str, x):
        x = functional.relu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))
        return functional.dropout2d(x, self.dropout, self.training) if self.dropout else x

    def encode(self, x):
        skips = []
        for level, convs in enumerate(CONVS, start=1):
            for k in range(1, convs + 1):
                x = self.unit(f"{level}{k}", x)
            skips.append(x)
            x = functional.max_pool2d(x, 2, 2)
        return skips, x

    def forward(self, x1, x2):
        if self.variant == "ef":
            skips, x = self.encode(torch.cat((x1, x2), 1))
            groups = [[s] for s in skips]
        else:
            skips1, _ = self.encode(x1)
            skips2, x = self.encode(x2)
            if self.variant == "diff":
                groups = [[torch.abs(a - b)] for a, b in zip(skips1, skips2)]
            else:
                groups = [[a, b] for a, b in zip(skips1, skips2)]
        for level in range(len(CONVS), 0, -1):
            up = getattr(self, f"upconv{level}")(x)
            ref = groups[level - 1][0]
            pad = (0, ref.shape[3] - up.shape[3], 0, ref.shape[2] - up.shape[2])
            x = torch.cat((functional.pad(up, pad, mode="replicate"), *groups[level - 1]), 1)
            for k in range(CONVS[level - 1], 0, -1):
                if level == 1 and k == 1:
                    return functional.log_softmax(self.conv11d(x), dim=1)
                x = self.unit(f"{level}{k}d", x)
        raise AssertionError("unreachable")


def notebook_standardise(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """The notebook's ``(I - I.mean()) / I.std()`` per image (all bands), NCHW, computed in
    float64 and returned as `dtype`."""
    images = images.astype(np.float64)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    std = images.std(axis=(1, 2, 3), keepdims=True)
    return np.ascontiguousarray(((images - mean) / std).transpose(0, 3, 1, 2), dtype)


class TorchSide:
    """A PyTorch network trained as the notebook does: Adam(weight_decay=1e-4), NLLLoss with
    the class weights [2p, 2(1 - p)], ExponentialLR(0.95) after every epoch; in `dtype`
    (the network must already be in it)."""

    def __init__(
        self, net: nn.Module, pos_fraction: float, steps_per_epoch: int, dtype=torch.float32
    ):
        p = self.pos_fraction = pos_fraction
        self.net, self.dtype = net, dtype
        self.criterion = nn.NLLLoss(weight=torch.tensor([2 * p, 2 * (1 - p)], dtype=dtype))
        self.optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, 0.95)
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0

    def inputs(self, t1, t2) -> tuple[torch.Tensor, torch.Tensor]:
        """Both dates standardised as the notebook does, NCHW tensors in `dtype`."""
        numpy_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        return tuple(torch.from_numpy(notebook_standardise(t, numpy_dtype)) for t in (t1, t2))

    def step(self, t1, t2, mask, learning_rate: float | None = None) -> float:
        """One step; `learning_rate` replaces the scheduler's rate for this step if given."""
        self.net.train()
        if learning_rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
        self.optimizer.zero_grad()
        target = torch.from_numpy(mask[..., 0].astype(np.int64))
        loss = self.criterion(self.net(*self.inputs(t1, t2)), target)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.steps_per_epoch == 0:
            self.scheduler.step()
        return loss.item()

    def change(self, t1, t2) -> np.ndarray:
        """Change where log p(change) is the larger (argmax), in evaluation mode."""
        self.net.eval()
        with torch.no_grad():
            log_p = self.net(*self.inputs(t1, t2))
        return log_p.numpy().argmax(1).astype(bool)
