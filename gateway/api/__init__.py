"""HTTP routes: the vendor protocols, and the management API for officers, auditors and admins."""
