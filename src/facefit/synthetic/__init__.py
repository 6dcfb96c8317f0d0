"""Synthetic faces with exact ground truth, for tests, benchmarks and training data.

* `scenes`: faces sampled from the model's priors, posed and lit, rendered over a background
  (`facefit.eval.synthetic` scores fits on them);
* `photos`: photos of random faces with known pose, SH light and albedo, rendered with the
  differentiable renderer (ground truth for the photometric refinement), and `frame_face`;
* `views`: landmark views of one identity under several poses and expressions (photos) or
  moving smoothly over time (video), for the multi-image and video fits.
"""
