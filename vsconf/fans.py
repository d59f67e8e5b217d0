"""Fans: how many inputs feed one output unit, and how many outputs one input reaches.

Three rules, all pure functions of a shape:

* ``tf``: TF1 ``_compute_fans`` -- in and out are the last two axes, the leading
  axes are the receptive field.
* ``torch``: PyTorch ``_calculate_fan_in_and_fan_out`` -- out and in are the first
  two axes (``[out, in, k...]``), the trailing axes are the receptive field.
  Ranks 0 and 1 follow the tf rule (PyTorch itself refuses them).
* explicit :class:`Axes` -- JAX's ``variance_scaling`` rule: fan_in is the product of
  the ``in`` axes, fan_out of the ``out`` axes, both times the receptive field (every
  axis named nowhere); ``batch`` axes count in neither.  With ``rest="batch"`` the
  unnamed axes are ignored instead, which is Keras 3's ``input_axes``/``output_axes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

Shape = tuple[int, ...]
LAYOUTS = ("tf", "torch")
MODES = ("fan_in", "fan_out", "fan_avg")


def _as_axis_tuple(value: int | Iterable[int] | None, what: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError(f"Axes `{what}` must be integers. Received: {value!r}")
    if isinstance(value, int):
        return (value,)
    if not isinstance(value, Iterable):
        raise ValueError(f"Axes `{what}` must be integers. Received: {value!r}")
    axes = tuple(value)
    for axis in axes:
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Axes `{what}` must be integers. Received: {value!r}")
    return axes


@dataclass(frozen=True)
class Axes:
    """Which axes of a tensor are inputs, outputs and batch; negative axes count from the end.

    fan_in is the product of the ``in`` axes' sizes, fan_out of the ``out`` axes', both
    times the receptive field: the product of every axis named nowhere (JAX's rule).
    ``batch`` axes count in neither.  With ``rest="batch"`` the unnamed axes are ignored
    too (Keras 3's ``input_axes``/``output_axes``).  The spec's ``axes: {in, out, batch}``
    is this.

    Args:
        in_axes: An axis or axes; default ``-2``.
        out_axes: An axis or axes; default ``-1``.
        batch_axes: Axes in neither fan; default none.
        rest: ``"receptive"`` (default) or ``"batch"``: what the unnamed axes are.

    Raises:
        ValueError: An axis is not an integer, is repeated, or is named twice; when used
            on a shape (:func:`compute_fans`), an axis is out of range for its rank.

    Example:
        >>> import vsconf
        >>> vsconf.compute_fans((4, 64, 128), vsconf.Axes(batch_axes=0))
        (64, 128)
        >>> vsconf.compute_fans((32, 16, 3, 3), vsconf.Axes(in_axes=1, out_axes=0))   # PyTorch's conv layout
        (144, 288)
        >>> vsconf.Axes(in_axes=0, out_axes=0)
        Traceback (most recent call last):
        ...
        ValueError: An axis is named in more than one of `in`, `out`, `batch`. Received: in=[0], out=[0], batch=[]
    """

    in_axes: tuple[int, ...] = (-2,)
    out_axes: tuple[int, ...] = (-1,)
    batch_axes: tuple[int, ...] = ()
    rest: Literal["receptive", "batch"] = "receptive"

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_axes", _as_axis_tuple(self.in_axes, "in"))
        object.__setattr__(self, "out_axes", _as_axis_tuple(self.out_axes, "out"))
        object.__setattr__(self, "batch_axes", _as_axis_tuple(self.batch_axes, "batch"))
        if self.rest not in ("receptive", "batch"):
            raise ValueError(f"Axes `rest` must be 'receptive' or 'batch'. Received: {self.rest!r}")
        named = self.in_axes + self.out_axes + self.batch_axes
        # Negative and positive spellings of one axis are only comparable once the
        # rank is known; here we reject what is repeated whatever the rank.
        for role, axes in (("in", self.in_axes), ("out", self.out_axes), ("batch", self.batch_axes)):
            if len(set(axes)) != len(axes):
                raise ValueError(f"Axes `{role}` repeats an axis. Received: {list(axes)}")
        if len(set(named)) != len(named):
            raise ValueError(
                "An axis is named in more than one of `in`, `out`, `batch`. "
                f"Received: in={list(self.in_axes)}, out={list(self.out_axes)}, "
                f"batch={list(self.batch_axes)}"
            )

    @classmethod
    def from_mapping(cls, mapping: dict) -> Axes:
        """Build from the spec form ``{in: [...], out: [...], batch: [...]}``."""
        unknown = set(mapping) - {"in", "out", "batch"}
        if unknown:
            raise ValueError(f"Unknown axes key(s) {sorted(unknown)}; expected 'in', 'out', 'batch'")
        return cls(
            in_axes=mapping.get("in", (-2,)),
            out_axes=mapping.get("out", (-1,)),
            batch_axes=mapping.get("batch", ()),
        )

    def to_mapping(self) -> dict:
        return {"in": list(self.in_axes), "out": list(self.out_axes), "batch": list(self.batch_axes)}

    def config(self) -> dict:
        """The config keys that rebuild these axes: Keras's two lists, or vsconf's ``axes``."""
        if self.rest == "batch":
            return {"input_axes": list(self.in_axes), "output_axes": list(self.out_axes)}
        return {"axes": self.to_mapping()}


    def resolve(self, rank: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Non-negative (in, out, batch) axes for a tensor of ``rank``; ValueError if they do not fit."""

        def fix(axes: tuple[int, ...], role: str) -> tuple[int, ...]:
            fixed = []
            for axis in axes:
                if not -rank <= axis < rank:
                    raise ValueError(
                        f"Axis {axis} in `{role}` is out of range for a tensor of rank {rank}"
                    )
                fixed.append(axis % rank)
            return tuple(fixed)

        in_axes = fix(self.in_axes, "in")
        out_axes = fix(self.out_axes, "out")
        batch_axes = fix(self.batch_axes, "batch")
        named = in_axes + out_axes + batch_axes
        if len(set(named)) != len(named):
            raise ValueError(
                f"Axes in={list(self.in_axes)}, out={list(self.out_axes)}, "
                f"batch={list(self.batch_axes)} name the same axis twice for a tensor of rank {rank}"
            )
        return in_axes, out_axes, batch_axes


def axes_from_config(config: Mapping) -> Axes | None:
    """The axes a config asks for: ``axes`` (JAX's rule), or Keras 3's ``input_axes`` and
    ``output_axes`` -- which Keras uses only when both are given, ignoring every other axis."""
    mapping = config.get("axes")
    inputs, outputs = config.get("input_axes"), config.get("output_axes")
    keras = inputs is not None and outputs is not None
    if mapping is not None and keras:
        raise ValueError("Give either `axes` or Keras's `input_axes`/`output_axes`, not both")
    if mapping is not None:
        return Axes.from_mapping(mapping)
    if keras:
        return Axes(in_axes=inputs, out_axes=outputs, rest="batch")
    return None


Layout = Union[str, Axes]


def _prod(values: Iterable[int]) -> int:
    return math.prod(int(v) for v in values)


def tf_fans(shape: Sequence[int]) -> tuple[int, int]:
    """TF1 ``_compute_fans``: ``(..., in, out)``."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = _prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def torch_fans(shape: Sequence[int]) -> tuple[int, int]:
    """PyTorch's rule: ``(out, in, k...)``; ranks 0 and 1 as :func:`tf_fans`."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return tf_fans(shape)
    receptive = _prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def axes_fans(shape: Sequence[int], axes: Axes) -> tuple[int, int]:
    """Fans from explicit axes (JAX's rule, or Keras 3's with ``rest="batch"``)."""
    shape = tuple(int(d) for d in shape)
    in_axes, out_axes, batch_axes = axes.resolve(len(shape))
    named = set(in_axes) | set(out_axes) | set(batch_axes)
    receptive = 1
    if axes.rest == "receptive":
        receptive = _prod(d for i, d in enumerate(shape) if i not in named)
    fan_in = _prod(shape[i] for i in in_axes) * receptive
    fan_out = _prod(shape[i] for i in out_axes) * receptive
    return fan_in, fan_out


def compute_fans(shape: Sequence[int], layout: Layout = "tf") -> tuple[int, int]:
    """Fans of ``shape`` under ``layout``: ``"tf"``, ``"torch"`` or an :class:`Axes`.

    Args:
        shape: The tensor's shape.
        layout: ``"tf"`` (TF1's ``_compute_fans``: ``[..., in, out]``), ``"torch"``
            (PyTorch's: ``[out, in, k...]``; ranks 0 and 1 as tf) or an :class:`Axes`.

    Returns:
        ``(fan_in, fan_out)``.  Rank 0 gives (1, 1); rank 1 (n, n).

    Raises:
        ValueError: An unknown layout, or axes that do not fit the shape.

    Example:
        >>> import vsconf
        >>> vsconf.compute_fans((3, 3, 16, 32))            # TF's HWIO convolution kernel
        (144, 288)
        >>> vsconf.compute_fans((32, 16, 3, 3), "torch")   # PyTorch's OIHW
        (144, 288)
        >>> vsconf.compute_fans((10,)), vsconf.compute_fans(())
        ((10, 10), (1, 1))
    """
    if isinstance(layout, Axes):
        return axes_fans(shape, layout)
    if layout == "tf":
        return tf_fans(shape)
    if layout == "torch":
        return torch_fans(shape)
    raise ValueError(f"Unknown layout {layout!r}; expected 'tf', 'torch' or an Axes")


def scaled_variance(scale: float, mode: str, fan_in: float, fan_out: float) -> float:
    """``scale / max(1, n)`` where n is fan_in, fan_out or their mean (TF1's arithmetic).

    Args:
        scale: The VarianceScaling scale.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        fan_in: The tensor's fan_in.
        fan_out: The tensor's fan_out.

    Returns:
        The variance the samples get.

    Raises:
        ValueError: An unknown mode.

    Example:
        >>> import vsconf
        >>> vsconf.scaled_variance(2.0, "fan_in", 144, 288)      # He: 2 / fan_in
        0.013888888888888888
        >>> vsconf.scaled_variance(1.0, "fan_avg", 100, 300)     # Glorot: 2 / (fan_in + fan_out)
        0.005
        >>> vsconf.scaled_variance(1.0, "fan_in", 0, 5)          # an empty fan counts as 1
        1.0
    """
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    elif mode == "fan_avg":
        n = (fan_in + fan_out) / 2.0
    else:
        raise ValueError(f"Argument `mode` should be one of {MODES}. Received: {mode}")
    return scale / max(1.0, n)
