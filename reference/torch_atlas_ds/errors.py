"""The exception types of torch_atlas_ds: exactly atlas_format's hierarchy, re-exported.

There is one hierarchy for the whole project so that the reference reader and the
validator report the same failure with the same type.
"""

from atlas_format.errors import (
    AtlasError,
    ChecksumError,
    CodecError,
    DatasetLockedError,
    FormatError,
    IncompleteDatasetError,
    LimitError,
    MetadataError,
    MissingShardError,
    UnsafePickleError,
    VersionError,
)

__all__ = [
    "AtlasError", "ChecksumError", "CodecError", "DatasetLockedError", "FormatError", "IncompleteDatasetError",
    "LimitError", "MetadataError", "MissingShardError", "UnsafePickleError", "VersionError",
]
