"""atlas_validator: the standalone validator of Atlas datasets.

Built on ``atlas_format`` alone: it never imports torch or ``torch_atlas_ds`` and never
unpickles data (pickles are scanned opcode by opcode).

    >>> from atlas_validator import validate
    >>> report = validate("path/to/dataset", jobs=2)
    >>> report.ok, [f.id for f in report.errors]
"""

__version__ = "0.3.0"

from .catalog import CATALOG, CatalogEntry  # noqa: E402
from .findings import Finding, Report  # noqa: E402
from .pickle_scan import ScanLimits  # noqa: E402
from .runner import validate  # noqa: E402

__all__ = ["CATALOG", "CatalogEntry", "Finding", "Report", "ScanLimits", "validate", "__version__"]
