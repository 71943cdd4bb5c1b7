"""The append-only, hash-chained audit log.

records.py  what a record says (the contract the pipeline appends)
chain.py    canonical bytes and the hash chain: pure functions
models.py   the audit_log table
guards.py   the DDL that makes the database refuse UPDATE, DELETE and TRUNCATE
schemas.py  what the service takes and returns (query filters, pages, reports)
log.py      AuditLog: append, query, verify
"""
