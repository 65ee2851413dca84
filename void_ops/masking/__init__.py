"""Masks from prompts: SAM2 video tracking, the Gemini VLM facade, and the quadmask they combine into.

* ``void_ops.masking.sam2_video``: ``Sam2VideoMasker`` tracks prompted objects through a shot, both ways in time.
* ``void_ops.masking.vlm``: ``GeminiVlm`` locates objects and reasons about what they affect; ``ReplayVlm``
  answers the same requests offline from stored exchanges.
* ``void_ops.masking.compose``: the affected (grey) region, the SAM2-only dilation ring, and the quadmask.

The submodules are not imported here: sam2 initialises Hydra globally and google-genai is heavy, so each is
imported only by the constructor or function that needs it.
"""

__all__: list[str] = []
