"""Networks: the band-aware ResNet-18 encoder shared by pretraining and fine-tuning."""

from cloudkit.models.encoder import Encoder, check_bands, encoder_state, load_encoder

__all__ = ["Encoder", "check_bands", "encoder_state", "load_encoder"]
