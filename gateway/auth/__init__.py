"""Who is calling: principals, case-bound credentials, signature verification."""
