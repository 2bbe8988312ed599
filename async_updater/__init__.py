"""async_updater: apply per-user settings to a rate-limited, SigV4-signed REST API as fast as it
allows, and prove what happened to every user.

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from typing import TYPE_CHECKING, Any

from .aws_operation import ModelOperation, ResolvedEndpoint, resolve_endpoint
from .before import BeforeStore, MemoryBeforeStore
from .config import DEFAULT_ENDPOINT, LimitScope, UpdaterConfig
from .errors import (
    ConfigError,
    CredentialsError,
    InputError,
    ReportError,
    ReportLocked,
    RowError,
    SafetyStop,
    StateError,
    UpdaterError,
)
from .model import (
    REPORT_COLUMNS,
    Plan,
    Record,
    Result,
    RowRecord,
    RunSummary,
    Status,
    UserRecord,
)
from .operation import (
    ChimeGetUserSettings,
    ChimeUpdateUserSettings,
    HttpRequest,
    Operation,
    StateReader,
)
from .pipeline import Updater, update_users
from .ratelimit import ControllerSettings, Pacer, RateController
from .report import CsvReport, JsonlReport, MemoryReport, ReportSink, open_report, read_report
from .safety import MaxFailures, StopCause, StopReason
from .signing import BotocoreCredentials, CredentialProvider, Credentials, StaticCredentials
from .source import CsvSource, Shard, ShardBasis, count_data_lines, read_records
from .stats import Timeline, TimelinePoint

if TYPE_CHECKING:
    from .mock_server import MockChimeServer, MockConfig

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The mock server loads lazily, so `python -m async_updater.mock_server` runs a module that
    # the package has not already imported (and tools that never use it do not load aiohttp.web).
    if name in ("MockChimeServer", "MockConfig"):
        from . import mock_server

        return getattr(mock_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ENDPOINT",
    "REPORT_COLUMNS",
    "BeforeStore",
    "BotocoreCredentials",
    "ChimeGetUserSettings",
    "ChimeUpdateUserSettings",
    "ConfigError",
    "ControllerSettings",
    "CredentialProvider",
    "Credentials",
    "CredentialsError",
    "CsvReport",
    "CsvSource",
    "HttpRequest",
    "InputError",
    "JsonlReport",
    "LimitScope",
    "MaxFailures",
    "MemoryBeforeStore",
    "MemoryReport",
    "MockChimeServer",
    "MockConfig",
    "ModelOperation",
    "Operation",
    "Pacer",
    "Plan",
    "RateController",
    "Record",
    "ReportError",
    "ReportLocked",
    "ReportSink",
    "ResolvedEndpoint",
    "Result",
    "RowError",
    "RowRecord",
    "RunSummary",
    "SafetyStop",
    "Shard",
    "ShardBasis",
    "StateError",
    "StateReader",
    "StaticCredentials",
    "Status",
    "StopCause",
    "StopReason",
    "Timeline",
    "TimelinePoint",
    "Updater",
    "UpdaterConfig",
    "UpdaterError",
    "UserRecord",
    "__version__",
    "count_data_lines",
    "open_report",
    "read_records",
    "read_report",
    "resolve_endpoint",
    "update_users",
]
