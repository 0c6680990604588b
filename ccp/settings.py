"""Settings, each from an environment variable with a working default for a local run.

The defaults match what ``bin/run`` starts: PostgreSQL on 127.0.0.1:15439 and Redis on
127.0.0.1:16399. Production sets DATABASE_URL, REDIS_URL, CCP_SECRET_KEY, CCP_ALLOWED_HOSTS.
"""

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("CCP_SECRET_KEY", "insecure-local-development-key-change-me-in-production")
DEBUG = env_bool("CCP_DEBUG", False)
ALLOWED_HOSTS = env_list("CCP_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CCP_CSRF_TRUSTED_ORIGINS", "http://localhost:8000,http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "ccp.system",
    "ccp.accounts",
    "ccp.contracts",
    "ccp.orders",
    "ccp.risk",
    "ccp.clearing",
    "ccp.marketdata",
    "ccp.settlement",
    "ccp.matching",
    "ccp.book",
    "ccp.perps",
    "ccp.prices",
]

# The Admin* ones are Django's (and WhiteNoise's), passed by for the API's paths (ccp.negotiation).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ccp.negotiation.AdminStaticMiddleware",
    "ccp.negotiation.AdminSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "ccp.negotiation.AdminAuthenticationMiddleware",
    "ccp.negotiation.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ccp.throttling.admin_login_throttle",
]

ROOT_URLCONF = "ccp.urls"
ASGI_APPLICATION = "ccp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "ccp" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Health checks: a pooled connection is checked before it is handed out (ccp.dbcheck: a round trip only
# when PostgreSQL sent it something unasked, as when it restarted), a persistent one before it is reused, so
# after PostgreSQL restarts a dead connection is replaced instead of failing requests and tasks.
DATABASES = {"default": dj_database_url.config(default="postgres://ccp@127.0.0.1:15439/ccp",
                                               conn_health_checks=True)}
# The server's processes (``python -m ccp.server`` sets CCP_DB_PER_THREAD=1 unless given): their request threads
# are long-lived (ccp.server.RequestThreads), so each keeps its own connection from one request to the next,
# checked before each request as the pool checks its connections (``ccp.postgres``), instead of taking one from
# the pool and giving it back (about 5% of a single order's CPU).
if env_bool("CCP_DB_PER_THREAD", False):
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"]["ENGINE"] = "ccp.postgres"
# Elsewhere a connection pool per process: threads that come and go (asgiref's, Channels') would otherwise open
# a PostgreSQL session each. Requests and tasks return their connection to the pool when they end
# (celery_app.py for tasks).
elif env_bool("CCP_DB_POOL", True):
    pool_size = int(os.environ.get("CCP_DB_POOL_SIZE", "20"))
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": pool_size, "timeout": 30}}
    DATABASES["default"]["ENGINE"] = "ccp.postgres"  # Django's, the pool checking with ccp.dbcheck
# Server-side binding and prepared statements: the same statements run thousands of times (order entry,
# the matcher); psycopg prepares one on its second run per connection, and PostgreSQL stops parsing and
# planning it (bench/order_intake.py: PostgreSQL CPU per single order 3.2 -> 2.1 ms). Off for a pooler
# in transaction mode (CCP_DB_PREPARE=0), which cannot keep a session's prepared statements.
if env_bool("CCP_DB_PREPARE", True):
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=2)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16399/0")

# Celery: JSON only, late acks (every task is idempotent), beat schedules in the database.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CCP_CELERY_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the whole connection pool of a prefork worker process every this many
# tasks (without it: after every task, a new PostgreSQL session each). Each task hands its connection
# back to the pool when it ends (celery_app.py), so a connection broken by a restart is dropped at once.
CELERY_DB_REUSE_MAX = 1000

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # redis-py 8 defaults socket_timeout to 5 s, the same as channels_redis' blocking read: without
        # None, every stream idle for 5 s dies with a TimeoutError (daphne closes it with 1011).
        "CONFIG": {"hosts": [{"address": os.environ.get("CHANNEL_LAYER_URL", REDIS_URL), "socket_timeout": None}]},
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["ccp.accounts.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ccp.parsers.JsonParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "ccp.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "ccp.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "ccp.query.Pagination",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ccp API",
    "DESCRIPTION": "Central counterparty for crypto derivatives: wallet sign-in, contracts, orders, balances.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ContractKindEnum": "ccp.contracts.payoffs.ContractKind",
        "ContractStateEnum": "ccp.contracts.models.ContractState",
        "OrderStateEnum": "ccp.orders.states.OrderState",
        "SideEnum": "ccp.orders.models.Side",
        "PositionSideEnum": ["long", "short"],
        "OrderKindEnum": "ccp.orders.models.OrderKind",
        "TimeInForceEnum": "ccp.orders.models.TimeInForce",
        "SelfTradePreventionEnum": "ccp.orders.models.SelfTrade",
        "TriggerEnum": "ccp.orders.models.Trigger",
        "TriggerSourceEnum": "ccp.orders.models.TriggerSource",
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "ccp.schema.error_responses"],
}

# Wallet sign-in (EIP-4361 messages signed with EIP-191).
CCP_SIGNIN_DOMAIN = os.environ.get("CCP_SIGNIN_DOMAIN", "localhost:8000")
CCP_SIGNIN_URI = os.environ.get("CCP_SIGNIN_URI", f"http://{CCP_SIGNIN_DOMAIN}")
CCP_SIGNIN_NONCE_TTL = timedelta(seconds=int(os.environ.get("CCP_SIGNIN_NONCE_TTL_SECONDS", "300")))
CCP_API_TOKEN_TTL = timedelta(seconds=int(os.environ.get("CCP_API_TOKEN_TTL_SECONDS", str(24 * 3600))))
# Beat deletes challenges this long after they expired, and tokens this long after they expired or were revoked.
CCP_SIGNIN_CHALLENGE_RETAIN = timedelta(seconds=int(os.environ.get("CCP_SIGNIN_CHALLENGE_RETAIN_SECONDS", "3600")))
CCP_API_TOKEN_RETAIN = timedelta(days=int(os.environ.get("CCP_API_TOKEN_RETAIN_DAYS", "7")))
# Demo only: let any wallet sign in (it becomes a client without a deposit). Off in production.
CCP_SIGNIN_ALLOW_ANY = env_bool("CCP_SIGNIN_ALLOW_ANY", False)
CCP_SIGNIN_ALLOWED_ADDRESSES = [a.lower() for a in env_list("CCP_SIGNIN_ALLOWED_ADDRESSES", "")]
CCP_CHAIN_ID = int(os.environ.get("CCP_CHAIN_ID", "31337"))

CCP_HEARTBEAT_SECONDS = int(os.environ.get("CCP_HEARTBEAT_SECONDS", "10"))
# Batch auctions: one per pair every interval; the solver's time limit and relative MIP gap.
CCP_AUCTION_INTERVAL = timedelta(seconds=int(os.environ.get("CCP_AUCTION_INTERVAL_SECONDS", "10")))
# A safety net only: the solver stops on work limits (the result does not depend on the machine's load).
CCP_AUCTION_TIME_LIMIT_SECONDS = os.environ.get("CCP_AUCTION_TIME_LIMIT_SECONDS", "60")
# A MIP stage stops once its answer is proven within this share of the best possible (HiGHS' own default).
CCP_AUCTION_MIP_GAP = os.environ.get("CCP_AUCTION_MIP_GAP", "0.0001")
try:
    _mip_gap_ok = Decimal(0) <= Decimal(CCP_AUCTION_MIP_GAP) < Decimal("0.005")
except ArithmeticError:
    _mip_gap_ok = False
if not _mip_gap_ok:
    raise ImproperlyConfigured("CCP_AUCTION_MIP_GAP must be a number from 0 up to (not including) 0.005")
# An auction not applied this long after its last stage (plus the solver's time limit while it is being
# solved) is dispatched again by the next beat tick: a stage lost with a worker or a broker restart costs
# at most this plus the auction interval. Stages are idempotent and lock their auction row, so resuming a
# stage that is only slow waits for it or finds it done.
CCP_AUCTION_RESUME_AFTER = timedelta(seconds=int(os.environ.get("CCP_AUCTION_RESUME_AFTER_SECONDS", "10")))
# Prices and expiry.
CCP_VENUE_TIMEOUT_SECONDS = int(os.environ.get("CCP_VENUE_TIMEOUT_SECONDS", "5"))
# Orders on perpetuals: 0 refuses them (contract_not_tradeable), e.g. while operators stop margin trading.
CCP_PERPETUALS_OPEN = env_bool("CCP_PERPETUALS_OPEN", True)
# Perpetuals' funding times: every this many hours from 00:00 UTC (a divisor of 24).
# A perpetual position's margin call goes out when maintenance plus closing fee reaches this share of its equity,
# and again every CCP_MARGIN_CALL_REPEAT_SECONDS while it stays there.
CCP_MARGIN_CALL_RATIO = Decimal(os.environ.get("CCP_MARGIN_CALL_RATIO", "0.8"))
if not Decimal("0.1") < CCP_MARGIN_CALL_RATIO <= 1:
    raise ImproperlyConfigured("CCP_MARGIN_CALL_RATIO must lie in (0.1, 1]")
CCP_MARGIN_CALL_REPEAT_SECONDS = int(os.environ.get("CCP_MARGIN_CALL_REPEAT_SECONDS", "600"))
CCP_FUNDING_INTERVAL_HOURS = int(os.environ.get("CCP_FUNDING_INTERVAL_HOURS", "8"))
if CCP_FUNDING_INTERVAL_HOURS not in (1, 2, 3, 4, 6, 8, 12, 24):
    raise ImproperlyConfigured("CCP_FUNDING_INTERVAL_HOURS must divide 24: 1, 2, 3, 4, 6, 8, 12 or 24")
# The insurance fund: an ordinary client (fund locks, cash movements settled on chain) at this address; operators
# fund it by depositing from it. It takes over what a liquidation's book cannot (ccp.perps.fund).
CCP_INSURANCE_FUND_ADDRESS = os.environ.get("CCP_INSURANCE_FUND_ADDRESS",
                                            "0x00000000000000000000000000000000000f00d1")
if not re.fullmatch(r"0x[0-9a-f]{40}", CCP_INSURANCE_FUND_ADDRESS):
    raise ImproperlyConfigured("CCP_INSURANCE_FUND_ADDRESS must be a lower-case address: 0x and 40 hex digits")
# The insurance fund's unwind orders are protected at the mark -/+ this many basis points.
# The liquidation tasks enter at most this many positions' steps per transaction, worst first, then go on.
CCP_LIQUIDATIONS_PER_CHECK = int(os.environ.get("CCP_LIQUIDATIONS_PER_CHECK", "100"))
CCP_INSURANCE_UNWIND_BPS = int(os.environ.get("CCP_INSURANCE_UNWIND_BPS", "200"))
if not 0 <= CCP_INSURANCE_UNWIND_BPS < 10_000:
    raise ImproperlyConfigured("CCP_INSURANCE_UNWIND_BPS must lie in 0..9999")
CCP_SPOT_INTERVAL_SECONDS = int(os.environ.get("CCP_SPOT_INTERVAL_SECONDS", "30"))
# A venue price older than this is stale: never used for anything that moves money.
CCP_SPOT_STALE_AFTER = timedelta(seconds=int(os.environ.get("CCP_SPOT_STALE_AFTER_SECONDS", "120")))
CCP_SETTLEMENT_DELAY = timedelta(minutes=int(os.environ.get("CCP_SETTLEMENT_DELAY_MINUTES", "10")))
CCP_SETTLEMENT_MIN_VENUES = int(os.environ.get("CCP_SETTLEMENT_MIN_VENUES", "2"))
CCP_SETTLEMENT_MAX_DEVIATION = Decimal(os.environ.get("CCP_SETTLEMENT_MAX_DEVIATION", "0.01"))
# The chain: the FundLock contract's node, confirmation depth, and batch sizes.
CCP_CHAIN_URL = os.environ.get("CCP_CHAIN_URL", "")  # empty: the chain loops stay idle
CCP_CHAIN_OPERATOR_KEY = os.environ.get("CCP_CHAIN_OPERATOR_KEY", "")
CCP_CHAIN_HOUSE_ADDRESS = os.environ.get("CCP_CHAIN_HOUSE_ADDRESS", "")  # balances large batches; default operator
CCP_CHAIN_CONFIRMATIONS = int(os.environ.get("CCP_CHAIN_CONFIRMATIONS", "3"))
CCP_CHAIN_LOG_RANGE = int(os.environ.get("CCP_CHAIN_LOG_RANGE", "2000"))
CCP_DEMO_FAUCET = os.environ.get("CCP_DEMO_FAUCET", "") == "1"  # POST /api/v1/faucet (bin/run: on; a dev chain only)
# 600 movements to fresh balances stay under 16.7M gas (EIP-7825's per-transaction cap).
CCP_SETTLEMENT_BATCH_MAX = int(os.environ.get("CCP_SETTLEMENT_BATCH_MAX", "600"))
# A settlement transaction not mined this long is replaced (same nonce, 25% more gas price).
CCP_SETTLEMENT_REPLACE_AFTER = timedelta(seconds=int(os.environ.get("CCP_SETTLEMENT_REPLACE_AFTER_SECONDS", "120")))
# Settlement heals itself: at most BATCHES_PER_RUN batches sent per submit run and none while IN_FLIGHT_MAX
# are unconfirmed; a batch that failed on chain is sent again after a wait doubling from RETRY_BASE up to
# RETRY_MAX; an operator alert after ALERT_FAILURES failures, or when a batch stays unconfirmed ALERT_AFTER;
# confirmed batches up to RECHECK_BLOCKS deep are checked against the contract (a deeper reorg loses them).
CCP_SETTLEMENT_BATCHES_PER_RUN = int(os.environ.get("CCP_SETTLEMENT_BATCHES_PER_RUN", "10"))
CCP_SETTLEMENT_IN_FLIGHT_MAX = int(os.environ.get("CCP_SETTLEMENT_IN_FLIGHT_MAX", "50"))
CCP_SETTLEMENT_RETRY_BASE = timedelta(seconds=int(os.environ.get("CCP_SETTLEMENT_RETRY_BASE_SECONDS", "30")))
CCP_SETTLEMENT_RETRY_MAX = timedelta(seconds=int(os.environ.get("CCP_SETTLEMENT_RETRY_MAX_SECONDS", "3600")))
CCP_SETTLEMENT_ALERT_FAILURES = int(os.environ.get("CCP_SETTLEMENT_ALERT_FAILURES", "3"))
CCP_SETTLEMENT_ALERT_AFTER = timedelta(seconds=int(os.environ.get("CCP_SETTLEMENT_ALERT_AFTER_SECONDS", "600")))
CCP_SETTLEMENT_RECHECK_BLOCKS = int(os.environ.get("CCP_SETTLEMENT_RECHECK_BLOCKS", "1000"))
# Orders still 'received' this long after arrival are queued for validation again.
CCP_ORDER_REQUEUE_AFTER = timedelta(seconds=int(os.environ.get("CCP_ORDER_REQUEUE_AFTER_SECONDS", "15")))
# POST /orders (and /orders/batch) waits this long for the validation and answers with the result (0: no wait)
CCP_ORDER_WAIT_MS = int(os.environ.get("CCP_ORDER_WAIT_MS", "200"))
# Continuous contracts: a matcher batch takes at most this many received orders; contracts spread over
# this many Celery queues (book-0, book-1, ...), each consumed by one single-process worker.
CCP_BOOK_BATCH = int(os.environ.get("CCP_BOOK_BATCH", "200"))
CCP_BOOK_QUEUES = int(os.environ.get("CCP_BOOK_QUEUES", "1"))

# The API's edge: request size and shape, list pages, throttles (``ccp.edge``, ``ccp.parsers``,
# ``ccp.query``, ``ccp.throttling``; the README lists them).
CCP_MAX_BODY_BYTES = int(os.environ.get("CCP_MAX_BODY_BYTES", str(64 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = CCP_MAX_BODY_BYTES
CCP_JSON_MAX_DEPTH = int(os.environ.get("CCP_JSON_MAX_DEPTH", "32"))
CCP_PAGE_DEFAULT = int(os.environ.get("CCP_PAGE_DEFAULT", "100"))
CCP_PAGE_MAX = int(os.environ.get("CCP_PAGE_MAX", "1000"))


def _redis_db(url: str, db: int) -> str:
    """The same Redis server as ``url``, another database number."""
    head, _, _ = url.rpartition("/") if url.count("/") > 2 else (url, "", "")
    return f"{head}/{db}"


# Throttle counters live in their own Redis database, away from the broker's queues.
CCP_THROTTLE_REDIS_URL = os.environ.get("CCP_THROTTLE_REDIS_URL", _redis_db(REDIS_URL, 2))
CCP_THROTTLE_SIGNIN_IP = os.environ.get("CCP_THROTTLE_SIGNIN_IP", "30/min")
CCP_THROTTLE_SIGNIN_ADDRESS = os.environ.get("CCP_THROTTLE_SIGNIN_ADDRESS", "10/min")
CCP_THROTTLE_ORDERS = os.environ.get("CCP_THROTTLE_ORDERS", "50/s")
CCP_THROTTLE_WITHDRAWALS = os.environ.get("CCP_THROTTLE_WITHDRAWALS", "10/min")
CCP_THROTTLE_FAUCET = os.environ.get("CCP_THROTTLE_FAUCET", "10/h")  # per IP address and per wallet address
CCP_THROTTLE_ADMIN_LOGIN_IP = os.environ.get("CCP_THROTTLE_ADMIN_LOGIN_IP", "20/5min")
CCP_THROTTLE_ADMIN_LOGIN_USER = os.environ.get("CCP_THROTTLE_ADMIN_LOGIN_USER", "5/15min")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CCP_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# core: limits on orders.
# A client may hold at most this many open orders (received, accepted or partially filled).
CCP_MAX_OPEN_ORDERS = int(os.environ.get("CCP_MAX_OPEN_ORDERS", "1000"))
