"""Models (DiT, GPT), the EDM pieces, the config and the training loop."""
from twoclocks.training.config import PRESETS, TrainConfig
from twoclocks.training.edm import Preconditioned, edm_loss, heun_sample, karras_sigmas

__all__ = ["TrainConfig", "PRESETS", "Preconditioned", "edm_loss", "heun_sample", "karras_sigmas"]
