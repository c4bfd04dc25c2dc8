"""Use cases, one module per domain; each function is one thing a caller can do.

Each takes the ``Database`` (the unit of work) and its collaborators explicitly and owns
the transaction boundaries of its use case: one ``db.write`` per step, never a transaction
around a network call. The API, the portal and the CLI parse, call one of these, and
render. This package re-exports the use cases so a caller can write ``services.X``.
"""

from refill.services.agencies import (
    Agency,
    AgencyChange,
    create_agency,
    get_agency,
    list_audit_log,
    load_agency,
    set_low_balance_alert,
    update_agency,
)
from refill.services.holds import CallAuthorization, authorize_call
from refill.services.keys import (
    KEY_PREFIX,
    KEY_USE_RESOLUTION,
    MAX_KEY_OVERLAP,
    ApiKey,
    IssuedKey,
    Principal,
    authenticate,
    create_key,
    create_owner_key,
    create_subteam_key,
    key_agency,
    key_digest,
    list_keys,
    revoke_key,
    roll_key,
)
from refill.services.pages import MAX_PAGE, Page
from refill.services.payment_methods import (
    begin_card_setup,
    gateway_customer,
    get_saved_card,
    list_payment_methods,
    remove_payment_method,
    save_payment_method,
)
from refill.services.reloads import (
    AttemptProcessor,
    add_credits,
    answer_simulated_bank,
    cancel_reload,
    finish_authentication,
    get_reload,
    list_reloads,
    retry_now,
)
from refill.services.subteams import Subteam, create_subteam, get_subteam, list_subteams
from refill.services.usage import record_usage
from refill.services.wallet import (
    WalletView,
    adjust_wallet,
    get_wallet,
    grant_credits,
    list_transfers,
    update_auto_reload,
)

__all__ = [
    "KEY_PREFIX",
    "KEY_USE_RESOLUTION",
    "MAX_KEY_OVERLAP",
    "MAX_PAGE",
    "Agency",
    "AgencyChange",
    "ApiKey",
    "AttemptProcessor",
    "CallAuthorization",
    "IssuedKey",
    "Page",
    "Principal",
    "Subteam",
    "WalletView",
    "add_credits",
    "adjust_wallet",
    "answer_simulated_bank",
    "authenticate",
    "authorize_call",
    "begin_card_setup",
    "cancel_reload",
    "create_agency",
    "create_key",
    "create_owner_key",
    "create_subteam",
    "create_subteam_key",
    "finish_authentication",
    "gateway_customer",
    "get_agency",
    "get_reload",
    "get_saved_card",
    "get_subteam",
    "get_wallet",
    "grant_credits",
    "key_agency",
    "key_digest",
    "list_audit_log",
    "list_keys",
    "list_payment_methods",
    "list_reloads",
    "list_subteams",
    "list_transfers",
    "load_agency",
    "record_usage",
    "remove_payment_method",
    "retry_now",
    "revoke_key",
    "roll_key",
    "save_payment_method",
    "set_low_balance_alert",
    "update_agency",
    "update_auto_reload",
]
