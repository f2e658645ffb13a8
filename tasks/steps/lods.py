"""Levels of detail: a chain of ever lighter copies of a scene, for viewers that swap by distance.

Every level is decimated from the original, not from the level before it.
Chaining would be a little cheaper, but errors would add up level after level
and each level would wait for the previous one; from the original, each level
is the best the budget allows and all of them can run at once. A process runs
`lod_one` once per level as separate Ray tasks; `lods` runs them in turn, in
this process, for scripts and tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.steps.decimate import DECIMATE_DEFAULTS, DecimateOptions, decimate
from tasks.steps.errors import OptionsError
from tasks.steps.repair import RepairOptions, repair
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LodOptions:
    """Which levels to make and how."""

    ratios: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)
    """Share of the triangles each level keeps, finest first, each in (0, 1]; 1 is the
    original (repaired). Default: (1, 0.5, 0.25, 0.1)."""

    repair: RepairOptions | None = RepairOptions(fill_holes=False)
    """Repair applied to the original before decimating, None for none. Default: weld,
    clean and orient, no hole filling (a level should look like the original)."""

    decimate: DecimateOptions = DECIMATE_DEFAULTS
    """Other decimation settings (``lock_border``, ``preview``...); its ratio and triangle
    fields are replaced per level. Default: `DECIMATE_DEFAULTS`."""


LOD_DEFAULTS = LodOptions()


def lods(scene: Scene, options: LodOptions | None = None) -> list[Scene]:
    """One scene per ratio in ``options.ratios``, each decimated from ``scene`` (left untouched).

    Settings: the default chain (1, 0.5, 0.25, 0.1) suits a web viewer;
    ``LodOptions(ratios=(1, 0.1, 0.01))`` for huge scans seen from far away;
    ``LodOptions(repair=None)`` when the meshes are known clean.

    Run it on the scene as read (or merged). Each level is a separate copy, so
    memory grows with the number of levels; a process spreads them over tasks
    with `lod_one` instead.

    Reference: Luebke et al., "Level of Detail for 3D Graphics" (2002), ch. 2,
    discrete LODs.
    """
    options = options or LOD_DEFAULTS
    _check(options.ratios)

    # 1. Repair once, shared by every level
    base = scene.copy()
    if options.repair is not None:
        base = repair(base, options.repair)

    # 2. Each level from the repaired original
    levels = [_level(base, ratio, options.decimate) for ratio in options.ratios]
    logger.debug(
        "lods: %d triangles -> %s", scene.triangle_count, [level.triangle_count for level in levels]
    )
    return levels


def lod_one(scene: Scene, ratio: float, options: LodOptions | None = None) -> Scene:
    """One level: a repaired copy of ``scene`` decimated to ``ratio`` (``scene`` is untouched).

    A plain module-level function of picklable arguments, so a process can send
    it to Ray as one task per level.
    """
    options = options or LOD_DEFAULTS
    _check((ratio,))
    base = scene.copy()
    if options.repair is not None:
        base = repair(base, options.repair)
    return _level(base, ratio, options.decimate)


def _level(base: Scene, ratio: float, options: DecimateOptions) -> Scene:
    """``base`` decimated to ``ratio`` as a new scene; ratio 1 is a copy."""
    level = base.copy()
    if ratio >= 1.0:
        return level
    settings = DecimateOptions(
        ratio=ratio,
        max_error=options.max_error,
        lock_border=options.lock_border,
        preview=options.preview,
        normal_weight=options.normal_weight,
    )
    return decimate(level, settings)


def _check(ratios: tuple[float, ...]) -> None:
    if not ratios:
        raise OptionsError("lods: give at least one ratio")
    for ratio in ratios:
        if not 0 < ratio <= 1:
            raise OptionsError(f"lods: every ratio must be in (0, 1], got {ratio}")
