"""The geometry toolbox: composable steps on a `Scene` (see `scene.py`).

Processes and custom user scripts import the same functions, e.g.::

    from tasks.steps.io import load, save
    from tasks.steps.decimate import decimate, DecimateOptions

    scene = load("part.step")
    scene = decimate(scene, DecimateOptions(ratio=0.25))
    save(scene, "part.glb")
"""
