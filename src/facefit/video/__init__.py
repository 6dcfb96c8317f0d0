"""Video: decode, track the face, fit one identity for the clip and per-frame pose and
expression, smooth over time, and write JSON lines, an overlay video and an animated GLB.

Modules: `stream` (imageio/ffmpeg reading and writing), `track` (landmark tracking with
re-detection), `smooth` (Kalman or One Euro filter), `fitter` (per-frame fit with a fixed identity),
`pipeline` (the streaming loop), `synthetic` (blink clips with known closed frames, for
checking ARKit eyeBlink end to end); the animated glTF writer is `facefit.io.animated_glb`, the
overlay renderer `facefit.render.overlay`.
"""
