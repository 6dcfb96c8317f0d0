"""Face detection and landmarks: the `LandmarkDetector` interface and `FaceLandmarks`
(`base`), MediaPipe (`mediapipe`), the MTCNN profile detector (`mtcnn`) and facefit's network
(`network`)."""

from facefit.exports import lazy_exports

__all__ = ["FaceLandmarks", "LandmarkDetector", "MediaPipeDetector"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "FaceLandmarks": "facefit.detect.base",
    "LandmarkDetector": "facefit.detect.base",
    "MediaPipeDetector": "facefit.detect.mediapipe",
})
