"""async_updater: apply per-user settings to a rate-limited, SigV4-signed REST API as fast as it
allows, and prove what happened to every user.

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from .aws.credentials import BotocoreCredentials, CredentialProvider, Credentials, StaticCredentials
from .aws.endpoint import ResolvedEndpoint, resolve_endpoint
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
from .io.before import BeforeStore, MemoryBeforeStore
from .io.reader import read_report
from .io.report import CsvReport, JsonlReport, MemoryReport, ReportSink, open_report
from .io.source import CsvSource, Shard, ShardBasis, count_data_lines, read_records
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
from .operations.aws_model import ModelOperation
from .operations.base import HttpRequest, Operation, StateReader
from .operations.chime import ChimeGetUserSettings, ChimeUpdateUserSettings
from .pipeline.safety import MaxFailures, StopCause, StopReason
from .pipeline.stats import Timeline, TimelinePoint
from .pipeline.updater import Updater, update_users
from .ratelimit import ControllerSettings, Pacer, RateController

__version__ = "0.1.0"

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
