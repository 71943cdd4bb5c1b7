"""Vendor protocol adapters: parse a native request, forward it re-signed, render errors natively."""
