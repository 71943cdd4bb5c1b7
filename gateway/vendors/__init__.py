"""Vendor protocol adapters: parse native requests, forward them re-signed, answer natively."""
