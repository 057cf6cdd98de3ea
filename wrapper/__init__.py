"""gaze: systematic LoRA experiments on Stable Diffusion through kohya-ss sd-scripts."""

__version__ = "0.1.0"
