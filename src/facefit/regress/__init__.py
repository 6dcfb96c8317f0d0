"""facefit's own face-alignment network: 3DMM regression trained with face profiling
(3DDFA, Zhu et al. 2016) and AFLW's 21 visible landmarks (2DASL, Tu et al. 2019).

* `profiling`: synthesise large-pose views of a 300-W photo with exact labels;
* `dataset`: per-face shards of profiled views (``scripts/make_profiled_set.py``);
* `aflw21`: the AFLW-21 <-> iBUG-68 map, the masked landmark loss and the offset that moves
  the network's answers into AFLW's annotation convention;
* `network`: MobileNet-V1 x0.5 regressor (pose 8 + 40 shape + 10 expression);
* `train`: losses, checkpoints, validation on AFLW2000-3D dev (``python -m
  facefit.regress.train``);
* `inference`, `predictor`: the packaged weights, run without torch.

Training from scratch: ``make train`` (its three commands are listed in
``src/facefit/regress/weights/README.md``).
"""
