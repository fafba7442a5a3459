"""Video from stills: the backend contract, the model-free animatic, and diffusers backends.

- :mod:`reelflow.motion.backends` -- ``ClipRequest``, ``VideoBackend``, ``get_backend(name)``.
- :mod:`reelflow.motion.animatic` -- OpenCV camera moves over one still (CPU, no model).
- :mod:`reelflow.motion.morph` -- optical-flow first+last-frame transition (CPU, no model).
- :mod:`reelflow.motion.diffusion` -- LTX-Video / Wan image-to-video (imports torch; lazy).
- :mod:`reelflow.motion.tiny` -- tiny offline video pipelines for tests and the demo.
"""
