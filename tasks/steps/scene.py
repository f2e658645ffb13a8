"""The one in-memory scene that every step takes and returns.

A `Scene` is a `trimesh.Scene` (meshes, point clouds, the node graph with
names and transforms, PBR materials and textures) plus the facts about the
source that trimesh has no place for: CAD B-rep counts, PMI, variants,
animations, and the warnings gathered while reading or processing it.

Steps are plain functions `step(scene, options) -> scene`; a process is a
short list of them. Steps may modify `scene.trimesh_scene` in place and return
the same object, or return a new Scene; callers always use the return value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trimesh


@dataclass
class Scene:
    """A trimesh scene and what the source file said that trimesh cannot hold."""

    trimesh_scene: trimesh.Scene
    """Geometry, node graph (names, transforms), materials and textures."""

    source_name: str = ""
    """File name the scene was read from (no directory), e.g. ``as1-oc-214.stp``."""

    source_format: str = ""
    """Registry key of the reader that produced it, e.g. ``glb``, ``step``, ``usd``."""

    facts: dict[str, int | float] = field(default_factory=dict)
    """Counts read from the source that trimesh does not keep. Known keys:
    ``brep_body_count``, ``brep_boundary``, ``pmi_component_count``,
    ``annotation_group_count``, ``annotation_count``, ``metadata_component_count``,
    ``metadata_property_count``, ``variant_count``, ``animation_count``.
    A missing key means the source has none (the metadata step reports 0)."""

    warnings: list[str] = field(default_factory=list)
    """Human-readable notes on what was skipped or approximated, in order."""

    unit: float | None = None
    """Metres per unit of the coordinates in `trimesh_scene`. A reader sets what the file
    declares (STEP: 0.001, as OCCT reads into millimetres; USD: ``metersPerUnit``) or
    leaves None for "the file says nothing"; `io.load` then fills the format's default
    and turns the scene into metres, so every step sees 1.0."""

    up_axis: str | None = None
    """``"x"``, ``"y"`` or ``"z"``: the up axis of the coordinates in `trimesh_scene`
    (right-handed). Readers set what the file declares or leave None; after `io.load`
    it is ``"y"``, as glTF."""

    source_unit: float | None = None
    """Metres per unit of the file as read (declared, the format's default, or the
    caller's ``input_unit``); set by `io.load`. Unitless writers (OBJ, STL, PLY) write in
    it unless told another unit."""

    source_up_axis: str | None = None
    """The source file's up axis (declared, the format's convention or the caller's
    ``up_axis``); set by `io.load`."""

    lods: list[Scene] = field(default_factory=list)
    """Coarser versions of this scene made while reading it: a CAD reader's further
    tessellations (``LoadOptions.lod_tessellations``), in that order. Usually empty."""

    @property
    def triangle_count(self) -> int:
        """Triangles over all placed mesh instances (a mesh placed twice counts twice)."""
        total = 0
        for node in self.trimesh_scene.graph.nodes_geometry:
            _, name = self.trimesh_scene.graph[node]
            geometry = self.trimesh_scene.geometry.get(name)
            faces = getattr(geometry, "faces", None)
            if faces is not None:
                total += len(faces)
        return total

    def copy(self) -> Scene:
        """A deep copy: steps on the copy leave this scene untouched."""
        copied = self.trimesh_scene.copy()
        for name, geometry in self.trimesh_scene.geometry.items():
            # trimesh's copy empties each mesh's cache, which is where a file's
            # vertex normals live; without them the copy would shade differently
            if isinstance(geometry, trimesh.Trimesh):
                # ...but a cache not yet checked against edits (repair dropped faces) is
                # stale: verify() clears what no longer matches before it is copied
                geometry._cache.verify()
                copied.geometry[name] = geometry.copy(include_cache=True)
        return Scene(
            trimesh_scene=copied,
            source_name=self.source_name,
            source_format=self.source_format,
            facts=dict(self.facts),
            warnings=list(self.warnings),
            unit=self.unit,
            up_axis=self.up_axis,
            source_unit=self.source_unit,
            source_up_axis=self.source_up_axis,
            lods=[lod.copy() for lod in self.lods],
        )

    def warn(self, message: str) -> None:
        """Record a warning that the job's steps and the metadata will show."""
        self.warnings.append(message)


def from_trimesh(obj: trimesh.Scene | trimesh.Trimesh | trimesh.PointCloud, **kwargs) -> Scene:
    """Wrap a trimesh object (a lone mesh becomes a one-node scene)."""
    if not isinstance(obj, trimesh.Scene):
        obj = trimesh.Scene(obj)
    return Scene(trimesh_scene=obj, **kwargs)


__all__ = ["Scene", "from_trimesh"]
