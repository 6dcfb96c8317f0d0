"""The fitting core: cameras, rotations, priors, residual blocks (and their normal equations
from precomputed moments, `facefit.fit.core.moments`) and the one GN/LM solver
that every landmark fitter composes (`facefit.fit.landmark_fit`, `facefit.fit.multi_image`,
`facefit.fit.flame_fit`, `facefit.fit.bilinear_fit`)."""

from facefit.fit.core.camera import (
    CameraPose,
    PerspectiveCamera,
    ScaledOrthographicCamera,
    camera_pose,
    estimate_perspective,
    estimate_scaled_orthographic,
    similarity_camera,
)
from facefit.fit.core.moments import (
    PointMoments,
    orthographic_equations,
    point_features,
    target_moments,
)
from facefit.fit.core.priors import BoxPrior, GaussianPrior
from facefit.fit.core.residuals import (
    ContourResidual,
    depth_rows,
    landmark_rows,
    linearize_points,
)
from facefit.fit.core.rotation import (
    Similarity,
    axis_angle,
    euler_from_rotation,
    rodrigues,
    rotation_from_euler,
    skew,
    umeyama,
)
from facefit.fit.core.solver import (
    BlockArrowNormalEquations,
    LMResult,
    NormalEquations,
    box_least_squares,
    box_quadratic,
    descend,
    gauss_newton,
    levenberg_marquardt,
    solve_linear_map,
    stack_rows,
)

__all__ = [
    "BlockArrowNormalEquations", "BoxPrior", "CameraPose", "ContourResidual", "GaussianPrior",
    "LMResult", "NormalEquations", "PerspectiveCamera", "PointMoments",
    "ScaledOrthographicCamera", "Similarity",
    "axis_angle", "box_least_squares", "box_quadratic", "camera_pose", "depth_rows", "descend",
    "estimate_perspective",
    "estimate_scaled_orthographic", "euler_from_rotation", "gauss_newton", "landmark_rows",
    "levenberg_marquardt", "linearize_points", "orthographic_equations", "point_features",
    "rodrigues", "rotation_from_euler",
    "similarity_camera", "skew", "solve_linear_map", "stack_rows", "target_moments", "umeyama",
]
