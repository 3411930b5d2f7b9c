"""atlas_validator: the standalone validator of Atlas datasets.

Built on ``atlas_format`` alone: it never imports torch or ``torch_atlas_ds`` and never
unpickles data (pickles are scanned opcode by opcode).
"""

__version__ = "0.2.0"
