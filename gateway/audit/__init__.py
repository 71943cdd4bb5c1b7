"""The append-only audit log: an RFC 6962 Merkle tree with signed checkpoints.

records.py     what a record says (the contract the pipeline appends)
chain.py       canonical bytes (the tree's leaves) and the older hash chain: pure functions
merkle.py      RFC 6962/9162 hashing, proofs and their verification: pure functions
checkpoint.py  C2SP signed notes and tlog-checkpoints, Ed25519 keys: pure functions
verifier.py    checks entries against a signed checkpoint, offline: pure
models.py      the audit_log, audit_tree and audit_checkpoint tables
guards.py      the DDL that makes the database refuse UPDATE, DELETE and TRUNCATE
schemas.py     what the service takes and returns (queries, pages, proofs, reports)
stores.py      where the append path reads and writes: SQLAlchemy (SQLite, db=) and asyncpg
log.py         AuditLog: group-commit append, checkpoints, proofs, query, verify, export
"""
