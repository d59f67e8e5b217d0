"""The init families: one room each, with the numbers that parametrise them.

``random`` -- normal, truncated normal and uniform draws given by their own numbers, from the
same per-tensor streams as VarianceScaling; ``gains`` -- PyTorch's gains of nonlinearities.
The spec reads its init kinds from here; the engine turns them into plan entries and
:mod:`vsconf.draw` into values.
"""
