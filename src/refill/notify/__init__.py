"""Telling the owner: events (the outbox), signed webhooks, e-mail, receipts.

- ``events``: the event types, ``emit`` in the transaction of the change, reading them.
- ``balance``: the balance crossings a posting makes (low, depleted, replenished).
- ``dispatch``: fans each new event out to webhook deliveries and e-mail.
- ``webhooks`` / ``netguard``: endpoints, signing, delivery; refusing private addresses.
- ``mail``: SMTP, recipients, templates.
- ``receipts``: numbered receipts issued with each charge that succeeded.
- ``runner``: the delivery pool and the periodic jobs (expiry notices).
"""
