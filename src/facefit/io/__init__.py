"""Files in and out: images (`image`), meshes (`mesh`), the exporters (`export`: OBJ, PLY,
GLB, NPZ, JSON, overlay), GLB containers (`glb`, `animated_glb`), HTML pages (`html`), the
output schema (`schemas`, `records`), safe model unpickling (`safe_pickle`) and atomic writes
(`atomic`)."""

from facefit.exports import lazy_exports

__all__ = ["SCHEMA_VERSION", "export", "load_image", "read_mesh", "to_rgb"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "export": "facefit.io.export",
    "read_mesh": "facefit.io.mesh",
    "load_image": "facefit.io.image",
    "to_rgb": "facefit.io.image",
    "SCHEMA_VERSION": "facefit.io.schemas",
})
