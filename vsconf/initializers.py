"""VarianceScaling with the semantics of ``tf.compat.v1.keras.initializers.VarianceScaling``,
the named presets, and the non-random initializers.

The vocabulary, as data:

* :data:`PRESETS` -- preset name -> ``(scale, mode, distribution)``: Keras's
  ``glorot_*``, ``he_*`` and ``lecun_*``, and ``torch_default`` (PyTorch's Linear/Conv
  weights: ``kaiming_uniform_(a=sqrt(5))``).
* :data:`CONSTANTS` -- the non-random names, ``zeros`` and ``ones``, with their value.
* :data:`TRUNCATED_NORMAL_STD` -- the standard deviation of a unit normal truncated to
  (-2, 2); a truncated normal's stddev is divided by it so that the samples have the
  variance asked for.

>>> import vsconf
>>> vsconf.PRESETS["he_normal"], vsconf.PRESETS["glorot_uniform"]
((2.0, 'fan_in', 'truncated_normal'), (1.0, 'fan_avg', 'uniform'))
>>> vsconf.CONSTANTS
{'zeros': 0.0, 'ones': 1.0}
>>> round(vsconf.TRUNCATED_NORMAL_STD, 6)
0.879626
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsconf import narrow, streams
from vsconf.dtypes import DtypeTable
from vsconf.fans import MODES, Axes, axes_from_config, compute_fans, scaled_variance

# Standard deviation of a unit normal truncated to (-2, 2):
# scipy.stats.truncnorm.std(a=-2, b=2) -- the constant TF, Keras and JAX divide by.
TRUNCATED_NORMAL_STD = 0.87962566103423978

DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")

# (scale, mode, distribution): Keras's presets plus PyTorch's Linear/Conv default,
# kaiming_uniform_(a=sqrt(5)), whose bound gain*sqrt(3/fan_in) equals sqrt(3*(1/3)/fan_in).
PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "torch_default": (1.0 / 3.0, "fan_in", "uniform"),
}
# Non-random initializers, by name, with their constant value.
CONSTANTS: dict[str, float] = {"zeros": 0.0, "ones": 1.0}

# name -> dtype; bfloat16 comes from ml_dtypes, imported when it is first asked for.
FLOAT_DTYPES: Mapping[str, np.dtype] = DtypeTable({name: name for name in ("float16", "bfloat16", "float32", "float64")})


def float_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype for ``dtype`` (a name, type or dtype); ValueError unless a supported float."""
    if isinstance(dtype, str) and dtype in FLOAT_DTYPES:  # the usual case, once per tensor
        return FLOAT_DTYPES[dtype]
    try:
        resolved = np.dtype(FLOAT_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in FLOAT_DTYPES:
        name = getattr(dtype, "name", getattr(dtype, "__name__", dtype))
        raise ValueError(
            f"Argument `dtype` is expected to be floating point "
            f"(float16, bfloat16, float32 or float64). Received: {name}."
        )
    return resolved


def array_limit() -> int:
    """The most bytes vsconf allocates for one array a caller asks for by shape: this
    machine's physical memory, or the process's address-space limit (``RLIMIT_AS``) when
    that is lower.  A bigger request could never be filled, and is refused up front."""
    limit = 2**63 - 1
    try:
        limit = min(limit, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows)
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
    except (ImportError, OSError, ValueError):
        pass
    return limit


def check_array_size(argument: str, shape: Sequence[int], dtype: np.dtype, received: str) -> None:
    """ValueError naming ``argument`` unless an array of ``shape`` and ``dtype`` fits in
    :func:`array_limit` (a raw ``MemoryError`` would name neither the request nor the
    limit); ``received`` shows what the caller passed."""
    count = math.prod(int(d) for d in shape)
    nbytes = count * np.dtype(dtype).itemsize
    limit = array_limit()
    if nbytes > limit:
        raise ValueError(
            f"Argument `{argument}` asks for {count} {np.dtype(dtype).name} elements ({nbytes} bytes), more than "
            f"{limit} bytes, the most vsconf allocates (this machine's memory, or the process's address-space limit). "
            f"Received: {argument}={received if len(received) <= 120 else received[:117] + '...'}"
        )


def canonical_distribution(distribution: str) -> str:
    """The sampling rule behind a distribution name: ``normal`` is ``truncated_normal``."""
    return "truncated_normal" if distribution == "normal" else distribution


def sampling(distribution: str, variance: float) -> tuple[str, float]:
    """(stream kind, parameter) drawing samples of ``variance`` from ``distribution``.

    The parameter is the standard deviation of the normal to truncate or not, or the
    uniform limit ``sqrt(3 * variance)``.
    """
    kind = canonical_distribution(distribution)
    if kind == "truncated_normal":
        return kind, math.sqrt(variance) / TRUNCATED_NORMAL_STD
    if kind == "untruncated_normal":
        return kind, math.sqrt(variance)
    if kind == "uniform":
        return kind, math.sqrt(3.0 * variance)
    raise ValueError(f"Unknown distribution {distribution!r}")


def check_scale(scale: Any) -> float:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, numbers.Real)
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise ValueError(f"Argument `scale` must be a positive float. Received: {scale!r}")
    return float(scale)


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"Argument `mode` should be one of {MODES}. Received: {mode!r}")
    return mode


def check_distribution(distribution: Any) -> str:
    lowered = distribution.lower() if isinstance(distribution, str) else distribution
    if lowered not in DISTRIBUTIONS:
        raise ValueError(
            f"Argument `distribution` should be one of {DISTRIBUTIONS}. Received: {distribution!r}"
        )
    if lowered == "normal":
        warnings.warn(
            "`normal` is a deprecated alias for `truncated_normal`", DeprecationWarning, stacklevel=3
        )
    return lowered


def _shape(shape: Any) -> tuple[int, ...]:
    dims = tuple(shape)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"A shape must be a sequence of non-negative integers. Received: {shape!r}")
    return tuple(int(d) for d in dims)


_UNSET = object()


class VarianceScaling:
    """Samples with variance ``scale / n``, n being fan_in, fan_out or their mean.

    Exactly TF1's constructor, call and config, plus two keyword-only extensions:
    ``axes`` (explicit fan axes, JAX's rule) and ``name`` on the call (which random
    stream to draw: the tensor's name in a spec).  With an integer ``seed`` the
    values are a pure function of (seed, name, shape, dtype, config).
    ``vsconf.variance_scaling`` and ``vsconf.variance_scaling_initializer`` are the same
    class, as in TF1.

    Fans come from the shape by TF's rule (the last two axes are in, out; the others
    multiply both), or from ``axes``.  ``n = max(1, fan)``.  ``truncated_normal`` cuts
    at two standard deviations and divides the stddev by :data:`TRUNCATED_NORMAL_STD`
    so the samples' variance is ``scale / n``; ``uniform`` draws from
    ``[-sqrt(3 * scale / n), sqrt(3 * scale / n)]``.

    Args:
        scale: A positive float.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"``, ``"untruncated_normal"``, ``"uniform"``,
            or ``"normal"`` (a deprecated alias of ``truncated_normal``); any case.
        seed: An integer, 0 <= seed < 2**63, for values that are the same on every
            machine; None draws fresh entropy on every call.
        dtype: Deprecated, as in TF1: pass the dtype to the call.  float16, bfloat16,
            float32 (the default) or float64.
        axes: A :class:`~vsconf.Axes` naming which axes are in, out and batch.

    Raises:
        ValueError: An argument has a bad value; the message names the argument and
            the value received.

    Example:
        >>> import vsconf
        >>> init = vsconf.VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal", seed=1)
        >>> w = init((3, 3, 16, 32))        # fans (144, 288) by TF's rule
        >>> w.shape, w.dtype.name
        ((3, 3, 16, 32), 'float32')
        >>> bool(abs(w.std() - (2.0 / 144) ** 0.5) < 0.005), bool(abs(w).max() <= 2 * (2.0 / 144) ** 0.5 / vsconf.TRUNCATED_NORMAL_STD)
        (True, True)
        >>> bool((init((3, 3, 16, 32)) == w).all())   # an integer seed: the same values every time
        True
        >>> init.get_config()
        {'scale': 2.0, 'mode': 'fan_in', 'distribution': 'truncated_normal', 'seed': 1, 'dtype': 'float32'}
        >>> vsconf.VarianceScaling.from_config(init.get_config()) == init
        True
        >>> vsconf.VarianceScaling(mode="fan-in")
        Traceback (most recent call last):
        ...
        ValueError: Argument `mode` should be one of ('fan_in', 'fan_out', 'fan_avg'). Received: 'fan-in'
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        dtype: Any = _UNSET,
        *,
        axes: Axes | None = None,
    ):
        self.scale = check_scale(scale)
        self.mode = check_mode(mode)
        self.distribution = check_distribution(distribution)
        self.seed = None if seed is None else streams.check_seed(seed)
        if dtype is _UNSET:
            self.dtype = np.dtype(np.float32)
        else:
            warnings.warn(
                "Passing `dtype` to the constructor is deprecated; pass it to the call instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            self.dtype = float_dtype(dtype)
        if axes is not None and not isinstance(axes, Axes):
            raise ValueError(f"Argument `axes` must be a vsconf.Axes or None. Received: {axes!r}")
        self.axes = axes

    def fans(self, shape: Sequence[int]) -> tuple[int, int]:
        return compute_fans(_shape(shape), self.axes or "tf")

    def variance(self, shape: Sequence[int]) -> float:
        fan_in, fan_out = self.fans(shape)
        return scaled_variance(self.scale, self.mode, fan_in, fan_out)

    def __call__(
        self,
        shape: Sequence[int],
        dtype: Any = None,
        partition_info: Any = None,
        *,
        name: str = "",
    ) -> np.ndarray:
        """Values for a tensor of ``shape``.

        Args:
            shape: The tensor's shape (non-negative integers).
            dtype: float16, bfloat16, float32 or float64 (a name or a dtype); None for the
                constructor's.  The values are the float64 draws rounded once (stream 1,
                see :mod:`vsconf.streams`), so the float16 values are the float64 ones
                rounded.
            partition_info: An object with ``full_shape`` (and ``var_offset``, the
                partition's offset): the fans come from the full shape, and the values
                are the matching slice of the full tensor.
            name: Which stream to draw from (a spec draws each tensor from its name's).

        Returns:
            A NumPy array of ``shape`` and ``dtype``.

        Raises:
            ValueError: A bad shape or dtype, or a shape whose array would pass
                :func:`array_limit` (this machine's memory): the message names the request
                and the limit.
        """
        shape = _shape(shape)
        dtype = self.dtype if dtype is None else float_dtype(dtype)
        check_array_size("shape", shape, dtype, repr(shape))
        full_shape, offset = shape, None
        if partition_info is not None:
            full_shape = _shape(partition_info.full_shape)
            offset = getattr(partition_info, "var_offset", None)
        kind, param = sampling(self.distribution, self.variance(full_shape))
        seed = streams.fresh_seed() if self.seed is None else self.seed
        return streams.draw(
            seed, name, shape, dtype, kind, param, full_shape=full_shape, offset=offset
        )

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
            "dtype": self.dtype.name,
        }
        if self.axes is not None:
            config.update(self.axes.config())
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VarianceScaling:
        """Rebuild from ``get_config()`` output: vsconf's, TF1's, or Keras 3's."""
        config = dict(config)
        unknown = set(config) - {
            "scale", "mode", "distribution", "seed", "dtype", "axes", "input_axes", "output_axes",
        }
        if unknown:
            raise ValueError(
                f"Unknown VarianceScaling config key(s): {sorted(unknown)}. Received: {config!r}"
            )
        axes = axes_from_config(config)
        for key in ("axes", "input_axes", "output_axes"):
            config.pop(key, None)
        if isinstance(config.get("seed"), Mapping):
            raise ValueError(
                "A serialized Keras SeedGenerator cannot be reproduced; give an integer seed. "
                f"Received: seed={config['seed']!r}"
            )
        return cls(**config, axes=axes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VarianceScaling):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"VarianceScaling({args})"


variance_scaling = VarianceScaling
variance_scaling_initializer = VarianceScaling


def preset(name: str, seed: int | None = None) -> VarianceScaling:
    """The named preset (``he_normal``, ``glorot_uniform``, ``torch_default``...) as a VarianceScaling.

    Args:
        name: A key of :data:`PRESETS`.
        seed: The initializer's seed (None: fresh entropy on every call).

    Returns:
        ``VarianceScaling(*PRESETS[name], seed=seed)``.

    Raises:
        ValueError: ``name`` is not a preset.

    Example:
        >>> import vsconf
        >>> vsconf.preset("torch_default", seed=3)
        VarianceScaling(scale=0.3333333333333333, mode='fan_in', distribution='uniform', seed=3, dtype='float32')
        >>> w = vsconf.preset("he_uniform", seed=3)((64, 10))
        >>> bool(abs(w).max() <= (3 * 2 / 64) ** 0.5)
        True
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    scale, mode, distribution = PRESETS[name]
    return VarianceScaling(scale, mode, distribution, seed=seed)


@dataclass(frozen=True)
class Constant:
    """Fills every element with ``value`` (``zeros`` and ``ones`` are Constant(0) and Constant(1)).

    Called like :class:`VarianceScaling`: ``Constant(value)(shape, dtype=None, partition_info=None)``
    returns a NumPy array (float32 unless ``dtype`` names another float).

    Args:
        value: The number every element gets.

    Raises:
        ValueError: ``value`` is not a number; at call time, a bad shape or dtype, or a
            shape whose array would pass :func:`array_limit` (this machine's memory).

    Example:
        >>> import vsconf
        >>> vsconf.Constant(0.5)((2, 3), dtype="float16")
        array([[0.5, 0.5, 0.5],
               [0.5, 0.5, 0.5]], dtype=float16)
        >>> vsconf.Constant(0.5).get_config()
        {'value': 0.5}
    """

    value: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise ValueError(f"Argument `value` must be a number. Received: {self.value!r}")

    def __call__(self, shape: Sequence[int], dtype: Any = None, partition_info: Any = None) -> np.ndarray:
        dtype = np.dtype(np.float32) if dtype is None else float_dtype(dtype)
        shape = _shape(shape)
        check_array_size("shape", shape, dtype, repr(shape))
        return narrow.full(shape, self.value, dtype)

    def get_config(self) -> dict[str, float]:
        return {"value": self.value}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constant:
        return cls(**config)


def zeros() -> Constant:
    """The initializer that fills with 0 (``init: zeros`` in a spec).

    Args:
        None.

    Returns:
        ``Constant(0.0)``.

    Raises:
        Nothing.

    Example:
        >>> import vsconf
        >>> vsconf.zeros()((3,))
        array([0., 0., 0.], dtype=float32)
    """
    return Constant(0.0)


def ones() -> Constant:
    """The initializer that fills with 1 (``init: ones`` in a spec).

    Args:
        None.

    Returns:
        ``Constant(1.0)``.

    Raises:
        Nothing.

    Example:
        >>> import vsconf
        >>> vsconf.ones()((2,), dtype="float64")
        array([1., 1.])
    """
    return Constant(1.0)
