"""What users open: ``mosaic.zarr``, COGs, quicklook PNGs and STAC Items, from the reconstructed Dataset."""

from .files import rgb_image, write_cog, write_quicklook, write_stac_item
from .write import OutputsResult, write_outputs

__all__ = ["write_outputs", "OutputsResult", "write_cog", "write_quicklook", "write_stac_item", "rgb_image"]
