"""Tessellation presets and explicit tolerances for B-rep shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.steps.errors import OptionsError
from tasks.steps.tessellate import PRESETS, TessellateOptions, tessellate_shape, tolerances


def cylinder():
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeCylinder

    return BRepPrimAPI_MakeCylinder(10.0, 40.0).Shape()


def triangles(options: TessellateOptions) -> int:
    return sum(len(face.triangles) for face in tessellate_shape(cylinder(), options))


def test_finer_presets_give_more_triangles():
    counts = [
        triangles(TessellateOptions(preset)) for preset in ("low", "medium", "high", "very_high")
    ]
    assert counts == sorted(counts)
    assert counts[-1] > 4 * counts[0]


def test_explicit_sag_bounds_the_chord_error():
    sag = 0.01
    faces = tessellate_shape(cylinder(), TessellateOptions(max_sag=sag, max_angle=90))
    # on the curved side (the face whose z varies) edge midpoints stay within the sag
    [side] = [face for face in faces if np.ptp(face.vertices[:, 2]) > 0]
    worst = 0.0
    for face in [side]:
        for triangle in face.triangles:
            a, b = face.vertices[triangle[0]], face.vertices[triangle[1]]
            middle = (a + b) / 2
            if abs(math.hypot(a[0], a[1]) - 10) < 1e-6 and abs(math.hypot(b[0], b[1]) - 10) < 1e-6:
                worst = max(worst, 10 - math.hypot(middle[0], middle[1]))
    assert 0 < worst <= sag * 1.05


def test_part_sag_ratio_and_model_max_sag_combine():
    linear, angular = tolerances(TessellateOptions("medium"), model_diagonal=1000, part_diagonal=10)
    preset = PRESETS["medium"]
    assert linear == pytest.approx(min(preset.max_sag_ratio * 1000, preset.sag_ratio * 10))
    assert angular == pytest.approx(math.radians(preset.max_angle))


def test_unknown_preset_and_negative_values_are_option_errors():
    with pytest.raises(OptionsError, match="unknown tessellation preset 'ultra'"):
        tolerances(TessellateOptions("ultra"), 1, 1)
    with pytest.raises(OptionsError, match="max_sag must be > 0"):
        tolerances(TessellateOptions(max_sag=-1), 1, 1)


def test_normals_point_out_of_the_solid():
    for face in tessellate_shape(cylinder(), TessellateOptions("high")):
        a, b, c = (face.vertices[face.triangles[:, i]] for i in range(3))
        geometric = np.cross(b - a, c - a)
        vertex = face.normals[face.triangles[:, 0]]
        assert ((geometric * vertex).sum(axis=1) > 0).all()
