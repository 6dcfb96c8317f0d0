"""facefit's own face-alignment network: 3DMM regression trained with face profiling
(3DDFA, Zhu et al. 2016) and AFLW's 21 visible landmarks (2DASL, Tu et al. 2019)."""
