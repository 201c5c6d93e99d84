"""`FOCUSHead`: the segmentation head = pixel decoder + FOCUS transformer decoder (docs/focus.md#components)."""
from detectron2.config import configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..registry import build_pixel_decoder, build_transformer_decoder

__all__ = ["FOCUSHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class FOCUSHead(nn.Module):
    """Thin wrapper with two children, `pixel_decoder` and `predictor` (state-dict prefixes of the official model).

    `forward(features, images=None)` maps backbone features `{"res2".."res5"}` to the predictor's output dict
    (`pred_logits`, `pred_masks`, `pred_boxes`, `pred_queries`, `binary_token`, `aux_outputs`). `images`
    (normalised, padded `(B, 3, H, W)`) are needed only for the training-time CLIP features.

    Unlike the official head there is no legacy `_load_from_state_dict` key-renaming hook: loading never depends on
    state-dict version metadata (docs/focus.md#weights).
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        num_classes,
        pixel_decoder,
        transformer_predictor,
        loss_weight=1.0,
        ignore_value=-1,
        transformer_in_feature="multi_scale_pixel_decoder",
    ):
        """
        Args:
            input_shape (dict[str, ShapeSpec]): backbone output shapes used by the head.
            num_classes: number of (non-void) classes, 2 in FOCUS.
            pixel_decoder: the pixel decoder module (returns mask features and multi-scale features).
            transformer_predictor: the transformer decoder module.
            loss_weight, ignore_value: stored for compatibility (unused, docs/focus.md#config-keys).
            transformer_in_feature: must be "multi_scale_pixel_decoder" (the FOCUS decoder is multi-scale).
        """
        super().__init__()
        if transformer_in_feature != "multi_scale_pixel_decoder":
            raise ValueError(
                "FOCUSHead: MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE must be 'multi_scale_pixel_decoder', "
                f"got {transformer_in_feature!r}"
            )
        self.in_features = [k for k, _ in sorted(input_shape.items(), key=lambda x: x[1].stride)]
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value
        self.transformer_in_feature = transformer_in_feature
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor

    @classmethod
    def from_config(cls, cfg, input_shape):
        sh = cfg.MODEL.SEM_SEG_HEAD
        input_shape = {k: v for k, v in input_shape.items() if k in sh.IN_FEATURES}
        return {
            "input_shape": input_shape,
            "num_classes": sh.NUM_CLASSES,
            "ignore_value": sh.IGNORE_VALUE,
            "loss_weight": sh.LOSS_WEIGHT,
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "transformer_in_feature": cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE,
            "transformer_predictor": build_transformer_decoder(cfg, sh.CONVS_DIM, mask_classification=True),
        }

    def forward(self, features, images=None):
        """See the class docstring."""
        mask_features, _, multi_scale_features = self.pixel_decoder(features)
        return self.predictor(multi_scale_features, mask_features, images)
