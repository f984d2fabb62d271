"""Models; importing the package registers the project's own timm backbones."""

from birdsweep.model import aisfx  # noqa: F401  (registers aisfx_cnn / aisfx_cnn_db with timm)
