"""Webhooks (API.md "Webhooks", Standard Webhooks): endpoints and their secrets
(:mod:`.endpoints`), signing (:mod:`.keys`), target safety (:mod:`.targets`), sending
(:mod:`.sender`) and the delivery worker (:mod:`.worker`). Events are written by the
stores, in the transaction of the change they report (``engine/store/*/webhooks.py``)."""
