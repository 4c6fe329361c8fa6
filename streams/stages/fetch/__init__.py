"""The fetch stage: downloads URL sources safely (netguard, safe_http) and politely
(politeness), streams them to the incoming bucket, and sends them on to validate."""
