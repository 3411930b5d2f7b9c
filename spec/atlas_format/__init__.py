"""atlas_format: the Atlas Dataset format, versions 1 and 2, declared once.

Binary structures are construct declarations (``npy``, ``zstd_frame``, ``lz4_frame``,
``index_v2``, ``block_v2``); JSON metadata has JSON Schemas (``metadata``); the
codec and checksum registries, limits, naming rules and the pickle policy
(``pickle_policy``, ``pickle_checks``, ``pickle_values``) live here too. Both the
reference reader/writer (``torch_atlas_ds``) and the validator (``atlas_validator``)
build on this package and never on each other. It never imports torch. The normative
text is spec/FORMAT.md.
"""

from __future__ import annotations

from .checksum import DEFAULT_CHECKSUM, XXH3_64, ChecksumAlgorithm, checksum_algorithm
from .codecs import CODECS, CodecInfo, codec_info
from .constants import DEFAULT_LIMITS, LATEST_VERSION, SUPPORTED_VERSIONS, Limits
from .enums import Codec, CompressionStrategy, DictionaryMode, Framing
from .errors import (
    AtlasError,
    ChecksumError,
    CodecError,
    FormatError,
    IncompleteDatasetError,
    LimitError,
    MetadataError,
    MissingShardError,
    UnsafePickleError,
    VersionError,
)
from .pickle_policy import OPCODES, POLICY
from .pickle_values import DEFAULT_PICKLE_LIMITS, PickleLimits

__version__ = "0.3.0"
SPEC_VERSION = "2.0"

__all__ = [
    "OPCODES", "POLICY", "PickleLimits", "DEFAULT_PICKLE_LIMITS",
    "DEFAULT_CHECKSUM", "XXH3_64", "ChecksumAlgorithm", "checksum_algorithm",
    "CODECS", "CodecInfo", "codec_info",
    "DEFAULT_LIMITS", "LATEST_VERSION", "SUPPORTED_VERSIONS", "Limits",
    "Codec", "CompressionStrategy", "DictionaryMode", "Framing",
    "AtlasError", "ChecksumError", "CodecError", "FormatError", "IncompleteDatasetError", "LimitError",
    "MetadataError", "MissingShardError", "UnsafePickleError", "VersionError",
]
