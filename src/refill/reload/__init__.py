"""Auto-reload: one module per rule.

- ``states``: the states as enums (attempt status, trigger, settings status, mode, rails).
- ``policy``: pure limits, decline classes, charge amounts, rail windows.
- ``settings``: the owner's settings, their one parser, validation and storage.
- ``trigger``: the trigger rule, one pure function (``decide``), and its SQL fast path.
- ``attempt``: an attempt as a record, and what a charge of it sends to the gateway.
- ``machine``: the state machine, the only writer of an attempt's status.
- ``settlement``: cancels at the gateway, money reported late, an operator's verdict.
- ``manual``: manual top-ups, exactly once per Idempotency-Key.
- ``changes``: an owner's settings change as one step of the engine.
- ``queries``: the work lists of the worker and the operator.
"""
