"""generate_metadata: what a model holds (parts, materials, triangles, CAD and PMI counts) as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from tasks.processes._params import ModelParams


class Params(ModelParams):
    parts: bool = Field(
        True,
        description="Include `parts`, one row per placed mesh (`name`, `triangles`, `vertices`,"
        " `material`, `watertight`, `bounds`); false keeps the answer small for assemblies"
        " of many thousand parts",
    )


def main(pc, params):
    """Describe the uploaded model: its size, parts, materials, geometry and CAD counts.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Counts are taken from the file as read,
    before any repair or simplification.

    Output: `metadata.json`, the same object as `result.metadata`.

    Result: `{"metadata": {...}}` with the sixteen PiXYZ keys: `aabb` (length of the
    bounding-box diagonal), `part_count` (placed meshes), `material_count`,
    `brep_boundary`, `brep_body_count`, `mesh_boundary` (boundary edges),
    `mesh_edge_count`, `mesh_vertex_count`, `polygon_count` (triangles),
    `animation_count`, `variant_count`, `pmi_component_count`,
    `annotation_group_count`, `annotation_count`, `metadata_component_count`,
    `metadata_property_count`; then `bounding_box` (`{"min", "max", "size"}`, world
    units), `area`, `volume` (null unless every mesh is closed), `watertight`,
    `point_count`, `point_cloud_count` (an E57's scans), `point_colors` (the clouds carry
    the file's RGB), `point_intensity` and `parts`. Counts are integers, every placement of a mesh
    counts, and a count the format cannot hold (B-rep counts of a mesh file, PMI
    of an OBJ) is 0.
    """
    from tasks.processes._shared import describe_scene, load_input
    from tasks.steps.metadata import MetadataOptions, metadata

    p = Params.model_validate(params)
    parts = p.parts
    pc.progress_set_total(3)
    scene = load_input(pc.get_input_file(), p.load_options())
    pc.progress_next(f"Read {describe_scene(scene)}")

    facts = metadata(scene, MetadataOptions(parts=parts))
    pc.progress_next(
        f"Counted {facts['part_count']:,} part(s), {facts['material_count']:,} material(s), "
        f"{facts['polygon_count']:,} polygons"
    )

    Path(pc.get_output_dir("metadata.json")).write_text(json.dumps(facts, indent=2))
    pc.progress_next("Wrote metadata.json")
    return {"metadata": facts}
