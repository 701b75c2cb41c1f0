"""Deep patch classifiers (compact CNN and ResNet) with exact dense inference.

Both networks classify the centre pixel of a ``k x k`` patch, for any number
of bands, and both are *dense-exact*: the trunk uses only valid (unpadded)
3x3 convolutions with no pooling and no stride, batch norm (a per-pixel affine
map in eval mode), ReLU, and 1x1 convolutions. A ``k x k`` patch therefore
collapses to ``1 x 1`` and the same network run once over a block
``(bands, H + 2h, W + 2h)`` (``h = k // 2``) yields ``(classes, H, W)`` logits
whose pixel ``[i, j]`` is the per-patch output of the patch centred at block
pixel ``[i + h, j + h]``. :meth:`DeepModel.predict_block` uses that (in row
chunks that overlap by the halo, so memory stays bounded and the result is
unchanged); :meth:`DeepModel.predict_patches` runs the network on patches.
Both run the same inference copy of the network: eval mode, batch norm folded
into the preceding convolution, channels-last on CUDA and (``cpu_channels_last``)
on the CPU, float32, under ``torch.inference_mode``; the copy is rebuilt when
the weights change. The speed-up of dense over per-patch inference is bounded
by the ratio of convolution work, ``sum over layers of (output size inside the
patch)^2`` to ``number of layers`` (about 35x for the 6-band, 6-layer CNN at
``k = 13``, 48x for the ResNet), unless per-patch inference is less efficient.

Where things are
----------------
The networks and how ``k`` maps to their depth: :mod:`pipeline.models.nets`. The epoch
loop (sampling, optimiser, early stopping, seeding): :mod:`pipeline.models.training`.
This module holds :class:`DeepModel` (checks, standardisation, inference, persistence)
and its two registered kinds, ``cnn`` and ``resnet``.

Inputs and NaN
--------------
Inputs are float32 in raw raster units with NaN for nodata / outside the
raster. They are standardised with per-band mean and std computed over the
valid pixels of the training patches (stored with the model), then NaN -> 0
(the training mean), identically in training, ``predict_patches`` and
``predict_block``.

Training
--------
Seeded (model init, dropout, stochastic depth, sampling and augmentation all
come from the model's seed; the global RNG state is forked and restored) and
deterministic on the CPU (``torch.use_deterministic_algorithms`` is switched on
for the duration of ``fit`` and restored afterwards). Augmentation (``augment``,
on by default; never at inference): a random flip / 90-degree rotation per patch
(the 8 elements of the dihedral group with ``flips`` and ``rotations``, the 4
rotations or the 4 axis mirrors with one of them), a per-patch amplitude factor
drawn in ``amplitude_scale`` (applied in raw units before standardisation), and,
with ``shift > 0``, a random shift of the patch centre by up to ``shift`` pixels
onto another labelled training pixel of the same group (polygon) and class --
i.e. the shifted patch is that pixel's own patch, so its label is right; where
no such neighbour was sampled the patch is not shifted. The pixel size is taken
from ``meta.extra["pixel_size"]`` if present, otherwise from the spacing of the
training coordinates. Class balance by inverse-frequency loss weights or a
weighted sampler; AdamW or SGD (momentum 0.9); cosine / one-cycle / constant
learning rate, stepped per batch.

Which epoch is kept (:meth:`DeepModel.selection`): the validation set is scored
after every epoch (the learning curves). With ``selection: validation`` it picks
the epoch: early stopping on validation macro-F1 with ``patience`` epochs and
restore of the best epoch's weights. With ``selection: schedule``, or without a
validation set, all epochs run and the last epoch's weights are kept (the cosine
schedule has brought the learning rate to ~0 by then). ``auto`` (default) uses
the validation set only when it holds at least ``min_validation_groups`` groups:
pixels of one polygon are not independent, and an epoch chosen on a few polygons
is chosen on noise. ``fit_info`` says which rule applied and why, and each row of
the history says whether its epoch is the one kept. ``val_loss`` is the
unweighted mean cross-entropy. On CUDA: pinned memory, non-blocking copies,
channels-last and float16 autocast with gradient scaling (inference stays
float32 so dense and per-patch outputs agree).
"""

from __future__ import annotations

import copy
import io
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.models import registry
from pipeline.models.base import ModelMeta, PatchRows, TrainingData
from pipeline.models.device import DeviceSettings, select_device
from pipeline.models.nets import (  # noqa: F401 - re-exported
    ARCHITECTURE,
    CompactCNN,
    PatchResNet,
    ResidualBlock,
    fold_batchnorm,
    randomize_batchnorm,
    trunk_layers,
)
from pipeline.models.settings import DeepConfig
from pipeline.models.training import (  # noqa: F401 - re-exported
    EpochSampler,
    band_stats,
    class_weights,
    deterministic,
    macro_f1,
    save_learning_curves,
    seeded,
    shift_table,
    train_network,
)

FORMAT = "landcover-deep/2"
#: Saved-file format -> the network layout it holds (:data:`pipeline.models.nets.ARCHITECTURE`).
#: Format 1 (0.1.x) predates the pointwise residual blocks: its ResNets are built as they were.
FORMATS = {"landcover-deep/1": 1, FORMAT: ARCHITECTURE}

__all__ = [
    "CNNModel",
    "ResNetModel",
    "DeepModel",
    "CompactCNN",
    "PatchResNet",
    "ResidualBlock",
    "load_deep",
    "save_learning_curves",
    "trunk_layers",
    "band_stats",
    "randomize_batchnorm",
]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class DeepModel:
    """Common training, inference and persistence for the patch networks (see module docstring)."""

    name: ClassVar[str] = ""
    map_workers = 1  # torch intra-op threads already use the cores

    def __init__(
        self,
        settings: DeepConfig | None = None,
        meta: ModelMeta | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        architecture: int = ARCHITECTURE,
    ):
        if meta is None:
            raise InputError(f"{self.name}: a ModelMeta is required")
        cfg = settings if settings is not None else registry.get(self.name).config()
        if not isinstance(cfg, DeepConfig):
            raise TypeError(f"{self.name}: settings must be a DeepConfig, got {type(cfg).__name__}")
        self.settings = cfg
        self.meta = meta
        self.seed = int(seed)
        self.architecture = int(architecture)  # network layout (files of 0.1.x: 1)
        self.k = int(meta.patch_size)
        trunk_layers(self.k)
        self.n_bands = len(meta.band_names)
        self.n_classes = len(meta.class_ids)
        if self.n_classes < 2:
            raise InputError(f"{self.name}: at least two classes are needed")
        self.class_ids = np.asarray(meta.class_ids, dtype=np.int64)
        self.device = select_device(device)
        self.device_settings = DeviceSettings.for_device(self.device)
        self.norm_mean = np.zeros(self.n_bands, np.float32)
        self.norm_std = np.ones(self.n_bands, np.float32)
        self.history: list[dict[str, Any]] = []
        self.fit_info: dict[str, Any] = {}
        self.progress = True
        self.progress_desc: str | None = None  # the progress bar's label (None: "train <name>")
        # Output pixels per forward pass in predict_block. Each chunk recomputes a 2h-row halo
        # (+19% work at 32k px of a 512-px window), yet 32k was still the fastest in an interleaved
        # A/B on this 2-core machine (CNN k=13: 0.53 Mpx/s vs 0.40 at 128k-256k): activations of
        # about 10 MB stay in cache. Memory stays bounded either way.
        self.dense_chunk_pixels = 1 << 15
        self.cpu_channels_last = True  # NHWC inference on the CPU (faster with oneDNN, same values)
        self.fold_batchnorm = True  # inference copy with BN folded into the convolutions
        self._infer_cache: tuple | None = None
        self.patch_batch = 2048  # patches per forward pass in predict_patches
        with seeded(self.seed, self.device):
            self.net = self.device_settings.prepare_model(self.build_network())
        self.net.eval()

    # -- architecture ---------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError

    @property
    def halo(self) -> int:
        return self.k // 2

    # -- preprocessing ----------------------------------------------------------------------------
    def _norm_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.norm_mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.norm_std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        return mean, std

    def _standardise(
        self, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor], channels_last: bool | None = None
    ) -> torch.Tensor:
        mean, std = norm
        x = (x - mean) / std
        x = torch.where(torch.isnan(x), torch.zeros((), dtype=x.dtype, device=x.device), x)
        if self.device_settings.channels_last if channels_last is None else channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _inference_net(self) -> tuple[nn.Module, bool]:
        """The network used for inference and whether inputs go channels-last.

        An eval-mode copy of :attr:`net` with every batch norm folded into the convolution
        before it (one pass less over each activation; the same function up to float rounding),
        in channels-last layout when the device settings say so, and on the CPU when
        ``cpu_channels_last`` (oneDNN convolutions run faster in NHWC). The copy is rebuilt
        whenever any weight or buffer of :attr:`net` changes (keyed on tensor versions), and
        both ``predict_patches`` and ``predict_block`` use it, so they stay exact to each other.
        """
        cl = bool(self.device_settings.channels_last or (self.device.type == "cpu" and self.cpu_channels_last))
        tensors = list(self.net.state_dict(keep_vars=True).values())
        key = (id(self.net), cl, self.fold_batchnorm, tuple((id(t), t._version) for t in tensors))
        if self._infer_cache is None or self._infer_cache[0] != key:
            net = copy.deepcopy(self.net).eval()
            if self.fold_batchnorm:
                net = fold_batchnorm(net)
            if cl:
                # Module.to documents to(memory_format=...); torch's overload stubs leave that form out.
                net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            for prm in net.parameters():
                prm.requires_grad_(False)
            self._infer_cache = (key, net)
        return self._infer_cache[1], cl

    def _check_bands(self, b: int, what: str) -> None:
        if b != self.n_bands:
            raise InputError(
                f"{self.name}: {what} has {b} bands, the model expects {self.n_bands} "
                f"({', '.join(self.meta.band_names)})"
            )

    # -- inference ----------------------------------------------------------------------------------
    def patch_logits(self, patches: PatchRows) -> np.ndarray:
        """(n, bands, k', k') raw patches (k' >= k, centre-cropped to k) -> (n, classes) float32 logits."""
        if patches.ndim != 4:
            raise InputError(f"{self.name}: patches must be (n, bands, k, k), got shape {patches.shape}")
        self._check_bands(patches.shape[1], "patches")
        kp = patches.shape[-1]
        if patches.shape[-2] != kp or kp < self.k or (kp - self.k) % 2:
            raise InputError(f"{self.name}: patches are {patches.shape[-2]}x{kp}, the model needs {self.k}x{self.k}")
        c = (kp - self.k) // 2
        out = np.empty((patches.shape[0], self.n_classes), np.float32)
        net, cl = self._inference_net()
        norm = self._norm_tensors()
        with torch.inference_mode():
            # Bounded in bytes too: a batch of 2048 patches of 218 bands would be 145 MB (and its
            # standardised copies as much again).
            step = max(32, min(self.patch_batch, (8 * 2**20) // (4 * int(np.prod(patches.shape[1:])))))
            for s in range(0, patches.shape[0], step):
                x = np.ascontiguousarray(patches[s : s + step, :, c : c + self.k, c : c + self.k], dtype=np.float32)
                xt = self._standardise(self.device_settings.to_device(torch.from_numpy(x)), norm, cl)
                out[s : s + len(x)] = net(xt).float().flatten(1).cpu().numpy()
        return out

    def block_logits(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2h, W + 2h) raw block -> (classes, H, W) float32 logits, in row chunks overlapping by 2h."""
        if block.ndim != 3:
            raise InputError(f"{self.name}: a block must be (bands, rows, cols), got shape {block.shape}")
        self._check_bands(block.shape[0], "block")
        h = self.halo
        H, W = block.shape[1] - 2 * h, block.shape[2] - 2 * h
        if H <= 0 or W <= 0:
            raise InputError(
                f"{self.name}: block {block.shape[1]}x{block.shape[2]} is smaller than the patch size {self.k}"
            )
        rows = max(1, self.dense_chunk_pixels // W)
        out = np.empty((self.n_classes, H, W), np.float32)
        net, cl = self._inference_net()
        norm = self._norm_tensors()
        with torch.inference_mode():
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                x = np.ascontiguousarray(block[None, :, r0 : r1 + 2 * h, :], dtype=np.float32)
                xt = self._standardise(self.device_settings.to_device(torch.from_numpy(x)), norm, cl)
                out[:, r0:r1] = net(xt)[0].float().cpu().numpy()
        return out

    def _decide(self, logits: torch.Tensor | np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        t = torch.as_tensor(logits)
        idx = torch.argmax(t, dim=axis)
        conf = torch.softmax(t, dim=axis).amax(dim=axis)
        return self.class_ids[idx.numpy()], conf.numpy().astype(np.float32)

    def predict_patches(self, patches: PatchRows) -> tuple[np.ndarray, np.ndarray]:
        return self._decide(self.patch_logits(patches), axis=1)

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decide(self.block_logits(block), axis=0)

    def predict_proba_patches(self, patches: PatchRows) -> np.ndarray:
        """(n, bands, k, k) -> (n, classes) softmax probabilities, columns in the order of ``meta.class_ids``."""
        return torch.softmax(torch.from_numpy(self.patch_logits(patches)).double(), dim=1).numpy()

    # -- training -----------------------------------------------------------------------------------
    def _to_index(self, y: np.ndarray, what: str) -> np.ndarray:
        lookup = {int(c): i for i, c in enumerate(self.class_ids)}
        y = np.asarray(y)
        bad = sorted({int(v) for v in np.unique(y)} - set(lookup))
        if bad:
            raise InputError(
                f"{self.name}: {what} labels contain class id {bad[0]} not in the class table "
                f"{list(map(int, self.class_ids))}"
            )
        return np.fromiter((lookup[int(v)] for v in y), dtype=np.int64, count=len(y))

    def _check_training(self, data: TrainingData, what: str) -> None:
        if data.patches.ndim != 4 or data.patches.shape[-1] != self.k or data.patches.shape[-2] != self.k:
            raise InputError(
                f"{self.name}: {what} patches have shape {data.patches.shape}, "
                f"expected (n, {self.n_bands}, {self.k}, {self.k})"
            )
        self._check_bands(data.patches.shape[1], f"{what} patches")

    def dihedral_elements(self) -> tuple[int, ...]:
        """The flips / 90-degree rotations training draws from, as codes ``t`` (``t & 4``:
        transpose, then ``t & 3`` quarter turns): all 8 with ``flips`` and ``rotations``; the 4
        rotations; the axis mirrors {identity, half turn, left-right, up-down} (the transpose
        followed by an odd number of quarter turns); or the identity."""
        s = self.settings
        if not s.augment:
            return (0,)
        return {
            (True, True): tuple(range(8)),
            (False, True): (0, 1, 2, 3),
            (True, False): (0, 2, 5, 7),
            (False, False): (0,),
        }[(bool(s.flips), bool(s.rotations))]

    def augmentation(self) -> str:
        """What the training patches go through, in words (``fit_info["augmentation"]``)."""
        s = self.settings
        if not s.augment:
            return "none"
        lo, hi = s.amplitude_scale
        parts = [] if lo == hi == 1.0 else [f"amplitude x[{lo:g}, {hi:g}]"]
        if s.shift > 0:
            parts.append(f"shift <= {s.shift} px within the polygon")
        if s.flips:
            parts.append("flips")
        if s.rotations:
            parts.append("90-degree rotations")
        return ", ".join(parts) or "none"

    def _augment(self, x: torch.Tensor, gen: torch.Generator, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Raw batch on device -> amplitude scaling, standardisation + NaN fill, a random flip / rotation."""
        n = x.shape[0]
        s = self.settings
        lo, hi = s.amplitude_scale
        if s.augment and not (lo == 1.0 and hi == 1.0):
            f = torch.empty(n).uniform_(lo, hi, generator=gen) if hi > lo else torch.full((n,), float(lo))
            x = x * f.to(x.device).view(n, 1, 1, 1)
        x = self._standardise(x, norm)
        elements = self.dihedral_elements()
        if len(elements) == 1:
            return x
        g = torch.as_tensor(elements)[torch.randint(0, len(elements), (n,), generator=gen)].to(x.device)
        out = torch.empty_like(x)
        for t in elements:
            m = g == t
            sel = x[m]
            if t & 4:
                sel = sel.transpose(-1, -2)
            if t & 3:
                sel = torch.rot90(sel, t & 3, dims=(-2, -1))
            out[m] = sel
        if self.device_settings.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _evaluate(self, data: TrainingData, y_idx: np.ndarray) -> tuple[float, float]:
        logits = self.patch_logits(data.patches)
        loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_idx)))
        return loss, macro_f1(y_idx, logits.argmax(axis=1))

    def _sampler(self, train: TrainingData, y_idx: np.ndarray, inv: np.ndarray) -> EpochSampler:
        s = self.settings
        shift_tab = None
        if s.augment and s.shift > 0:
            px = self.meta.extra.get("pixel_size") if isinstance(self.meta.extra, dict) else None
            shift_tab = shift_table(
                np.asarray(train.xy, np.float64), np.asarray(train.groups), y_idx, s.shift, float(px) if px else None
            )
        sample_p = inv[y_idx] / inv[y_idx].sum() if s.class_balance == "sampler" else None
        return EpochSampler(len(y_idx), min(s.batch_size, len(y_idx)), sample_p, shift_tab)

    def selection(self, validation: TrainingData | None) -> tuple[bool, str]:
        """Whether the validation set picks the epoch whose weights are kept, and why (in words).

        ``selection: auto`` trusts the validation set when it holds at least
        ``min_validation_groups`` groups (polygons): its pixels are not independent, so a
        validation set of a few polygons would choose an epoch on noise.
        """
        s = self.settings
        last = f"last epoch of the {s.epochs}-epoch schedule"
        best = f"best validation macro-F1, patience {s.patience}"
        if validation is None or len(validation) == 0:
            return False, f"{last}: no validation set"
        groups = int(np.unique(np.asarray(validation.groups)).size)
        held = f"validation holds {groups} groups, {len(validation)} pixels"
        if s.selection == "schedule":
            return False, f"{last}, as selection: schedule asks"
        if s.selection == "validation":
            return True, f"{best}, as selection: validation asks; {held}"
        if groups >= s.min_validation_groups:
            return True, f"{best}: {held}"
        return False, f"{last}: {held}, fewer than min_validation_groups = {s.min_validation_groups}"

    def architecture_text(self) -> str:
        """The network in words (``fit_info["network"]``)."""
        net = self.net
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        text = f"{len(convs)} 3x3 conv layers, {self.settings.channels} channels"
        if blocks:
            full = sum(1 for b in blocks if b.crop)
            text += f", {len(blocks)} residual blocks ({full} 3x3, {len(blocks) - full} pointwise)"
        return text

    def fit(self, train: TrainingData, validation: TrainingData | None = None) -> DeepModel:
        """Fit on ``train`` (patches (n, bands, k, k), class ids); ``validation`` is scored every
        epoch and picks the epoch to keep when :meth:`selection` says it can."""
        s = self.settings
        self._check_training(train, "training")
        n = len(train)
        if n < 2:
            raise InputError(f"{self.name}: need at least 2 training samples, got {n}")
        y_idx = self._to_index(train.y, "training")
        val_idx = None
        if validation is not None and len(validation) > 0:
            self._check_training(validation, "validation")
            val_idx = self._to_index(validation.y, "validation")
        else:
            validation = None
        on_val, why = self.selection(validation)
        ds = self.device_settings
        t_start = time.perf_counter()
        self.norm_mean, self.norm_std = band_stats(train.patches)
        inv = class_weights(y_idx, self.n_classes)
        loss_w = torch.as_tensor(inv, dtype=torch.float32, device=self.device) if s.class_balance == "loss" else None
        sampler = self._sampler(train, y_idx, inv)
        with seeded(self.seed, self.device), deterministic():
            self.net = ds.prepare_model(self.build_network())
            res = train_network(self, train, y_idx, validation, val_idx, sampler, loss_w, on_val)
        self.net.eval()
        self.history = res.history
        kept = next((h for h in res.history if h.get("kept")), {})
        self.fit_info = {
            "patch_size": self.k,
            "network": self.architecture_text(),
            "augmentation": self.augmentation(),
            "selection": "validation" if on_val else "schedule",
            "epoch_selection": why,
            "epochs_run": len(res.history),
            "best_epoch": int(res.best_epoch),  # the epoch whose weights are kept, however chosen
            "stopped_early": res.stopped_early,
            "best_val_macro_f1": res.best_f1,
            "kept_val_macro_f1": kept.get("val_macro_f1"),
            "device": str(self.device),
            "device_settings": ds.describe(),
            "train_samples": int(n),
            "n_train": int(n),
            "validation_samples": int(len(validation)) if validation is not None else 0,
            "validation_groups": int(np.unique(np.asarray(validation.groups)).size) if validation is not None else 0,
            "train_samples_per_s": float(res.samples_per_s),
            "fit_seconds": float(time.perf_counter() - t_start),
            "seed": self.seed,
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
        }
        return self

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": {v: k for k, v in FORMATS.items()}[self.architecture],
            "kind": self.name,
            "meta": asdict(self.meta),
            "settings": self.settings.model_dump(mode="json"),
            "seed": self.seed,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
            "norm_mean": torch.from_numpy(self.norm_mean.copy()),
            "norm_std": torch.from_numpy(self.norm_std.copy()),
            "history": json.loads(json.dumps(self.history)),
            "fit_info": json.loads(json.dumps(self.fit_info)),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        blob = self.to_dict()
        with atomic_path(path, lambda: _saved_size(blob)) as tmp:  # the size: only on a full disk
            torch.save(blob, tmp)
        return path


def _saved_size(blob: dict[str, Any]) -> int:
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.tell()


class CNNModel(DeepModel):
    name = "cnn"

    def build_network(self) -> nn.Module:
        s = self.settings
        return CompactCNN(self.n_bands, self.n_classes, self.k, channels=s.channels, dropout=s.dropout)


class ResNetModel(DeepModel):
    name = "resnet"

    def build_network(self) -> nn.Module:
        s = self.settings
        return PatchResNet(
            self.n_bands,
            self.n_classes,
            self.k,
            channels=s.channels,
            dropout=s.dropout,
            stochastic_depth=getattr(s, "stochastic_depth", 0.0),
            architecture=self.architecture,
        )


def load_deep(path: str | Path, device: str | torch.device = "cpu") -> DeepModel:
    """Rebuild a model saved by :meth:`DeepModel.save` (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        # torch's own message goes on to suggest weights_only=False, i.e. running the file's
        # code: never pass that on. Say what the file is not, and what was refused.
        unsafe = "weights only load failed" in str(e).lower() or "unsupported global" in str(e).lower()
        why = (
            "it holds objects other than tensors and plain values; refused, as loading them could run code"
            if unsafe
            else f"{type(e).__name__}"
        )
        raise InputError(f"{path}: not a saved deep model ({why})") from None
    deep = [s for s in registry.specs() if s.deep]
    kinds = {s.name: s for s in deep}
    if not isinstance(blob, dict) or blob.get("format") not in FORMATS or blob.get("kind") not in kinds:
        fmt = str(blob.get("format", "")) if isinstance(blob, dict) else ""
        newer = fmt.startswith("landcover-deep/") and fmt not in FORMATS
        raise InputError(
            f"{path}: saved by a newer version of landcover-pipeline ({blob['format']}); upgrade to load it"
            if newer
            else f"{path}: not a saved deep model (format {FORMAT} expected)"
        )
    spec = kinds[blob["kind"]]
    cls = spec.model_class()
    meta = ModelMeta.from_dict(blob["meta"])
    settings = spec.config.model_validate(blob["settings"])
    model = cls(
        settings=settings,
        meta=meta,
        seed=int(blob.get("seed", 0)),
        device=device,
        architecture=FORMATS[blob["format"]],
    )
    model.net.load_state_dict(blob["state_dict"])
    model.net.eval()
    model.norm_mean = blob["norm_mean"].numpy().astype(np.float32)
    model.norm_std = blob["norm_std"].numpy().astype(np.float32)
    model.history = list(blob.get("history") or [])
    model.fit_info = dict(blob.get("fit_info") or {})
    return model
