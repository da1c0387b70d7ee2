"""Numeric precision of the network: fp32, or bf16 where the hardware runs it natively.

One place decides which precision a job runs in (:func:`resolve_precision`):

* ``"fp32"``: float32 everywhere;
* ``"bf16"``: bfloat16 network arithmetic, also where the CPU only emulates it
  (slower, with a one-line notice);
* ``"auto"`` (the default): bf16 on CUDA and on CPUs with native bf16 units
  (Intel AMX, or AVX-512 BF16 on Intel and AMD), fp32 elsewhere. Training on a
  CPU is the exception: there "auto" means fp32, because bf16 autocast training
  measured only 1.2-1.3x faster (``bench_train.py``) and its weights are not
  bit-reproducible from run to run, which would break exact ``--resume``.
  ``--precision bf16`` still trains in bf16 on the CPU for those who want it.

Inference in bf16 runs the BN-folded network with bf16 weights and bf16
channels-last inputs (:func:`inference_net`); its outputs are cast back to
float32 before decoding. Training in bf16 uses autocast
(:func:`~cellpol_core.detection.network.autocast_context`) over float32
weights, so the optimiser and the loss stay in float32. Both choices were
measured (``benchmarks/bench_network.py --precision``, ``bench_train.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

from ..defaults import DEFAULT_PRECISION, PRECISIONS
from ..errors import InputError

__all__ = ["Precision", "resolve_precision", "check_precision", "cpu_bf16_unit",
           "cpu_flags", "inference_net", "PRECISIONS", "DEFAULT_PRECISION"]


@dataclass(frozen=True)
class Precision:
    """A resolved precision choice.

    Attributes
    ----------
    requested : str
        What the user asked for: "auto", "fp32" or "bf16".
    name : str
        What runs: "fp32" or "bf16".
    unit : str or None
        The hardware running bf16 natively ("AMX", "AVX-512 BF16", "CUDA"), or
        None (fp32, or emulated bf16).
    """

    requested: str
    name: str
    unit: Optional[str] = None

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def dtype(self):
        """The torch dtype of the network's weights and activations at inference."""
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def label(self) -> str:
        """For the device line: "fp32", "bf16/AMX", "bf16 emulated"..."""
        if not self.bf16:
            return "fp32"
        return f"bf16/{self.unit}" if self.unit else "bf16 emulated"

    @property
    def notice(self) -> Optional[str]:
        """A one-line notice when bf16 was asked for but runs emulated, else None."""
        if self.bf16 and self.unit is None:
            return ("bf16 requested but this CPU has no native bf16 units (AMX or AVX-512 BF16): "
                    "running emulated, usually slower than --precision fp32")
        return None


def check_precision(precision) -> str:
    """The precision name, lower-cased; :class:`InputError` for an unknown one."""
    name = str(precision).strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def cpu_flags() -> frozenset:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_unit(flags=None) -> Optional[str]:
    """The CPU's native bf16 unit: "AMX", "AVX-512 BF16", or None.

    Parameters
    ----------
    flags : iterable of str, optional
        CPU flags as ``/proc/cpuinfo`` names them (``amx_bf16``,
        ``avx512_bf16``), for tests. Default: ask torch (which also checks that
        the OS enabled AMX), falling back on ``/proc/cpuinfo``.
    """
    if flags is None:
        amx, avx = _torch_cpu_bf16()
        if amx is None:
            flags = cpu_flags()
        else:
            flags = {name for name, on in (("amx_bf16", amx), ("avx512_bf16", avx)) if on}
    flags = set(flags)
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    return None


def _torch_cpu_bf16():
    """(AMX, AVX-512 BF16) as torch sees them, or (None, None) where torch cannot tell."""
    try:
        import torch

        return (bool(torch.cpu._is_amx_tile_supported()),
                bool(torch.cpu._is_avx512_bf16_supported()))
    except (AttributeError, RuntimeError):  # a torch without these probes
        return None, None


def resolve_precision(precision=DEFAULT_PRECISION, device="cpu", *, flags=None,
                      training=False) -> Precision:
    """Decide what a job runs in.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"} or Precision
        The user's choice; a :class:`Precision` is returned as it is.
    device : str or torch.device
        Where the network runs.
    flags : iterable of str, optional
        CPU flags, for tests (see :func:`cpu_bf16_unit`).
    training : bool
        For training: "auto" is then fp32 on a CPU (see the module docstring).

    Returns
    -------
    Precision

    Raises
    ------
    InputError
        ``precision`` is not one of :data:`PRECISIONS`.
    """
    if isinstance(precision, Precision):
        return precision
    name = check_precision(precision)
    dev_type = getattr(device, "type", None) or str(device).split(":")[0].strip().lower()
    if dev_type == "cuda":
        unit = "CUDA" if _cuda_bf16() else None
    else:
        unit = cpu_bf16_unit(flags)
    if name == "auto" and training and dev_type != "cuda":
        unit = None
    if name == "fp32" or (name == "auto" and unit is None):
        return Precision(requested=name, name="fp32")
    return Precision(requested=name, name="bf16", unit=unit)


def _cuda_bf16() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except (AssertionError, RuntimeError):
        return False


_CAST = weakref.WeakKeyDictionary()


def inference_net(net, precision: Precision):
    """The inference network to run in ``precision``.

    fp32 returns ``net``. bf16 returns a bf16 copy of ``net`` in the same
    memory format, made once per network and kept as long as ``net`` lives,
    so a batch of images casts the weights once. The fused network's last
    1x1 convolution stays float32, so its outputs come back in float32.
    """
    if not precision.bf16:
        return net
    cached = _CAST.get(net)
    if cached is None:
        import copy

        cached = copy.deepcopy(net).to(precision.dtype)
        heads = getattr(cached, "_fused_heads", None)
        if heads is not None:
            # The last 1x1 convolution (~0.2 % of the FLOPs) stays float32:
            # it writes the heatmap logits and the embeddings that decoding reads.
            heads.out.float()
        _CAST[net] = cached
    return cached
