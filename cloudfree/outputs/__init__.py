"""What users open: COGs, quicklook PNGs and STAC Items, written from the reconstructed Dataset."""

from .files import rgb_image, write_cog, write_quicklook, write_stac_item

__all__ = ["write_cog", "write_quicklook", "write_stac_item", "rgb_image"]
