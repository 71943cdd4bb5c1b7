"""The append-only audit log: an RFC 6962 Merkle tree with signed checkpoints.

records.py     what a record says (the contract the pipeline appends)
chain.py       canonical bytes (the tree's leaves) and the older hash chain: pure functions
merkle.py      RFC 6962/9162 hashing, proofs and their verification: pure functions
checkpoint.py  C2SP signed notes and tlog-checkpoints, Ed25519 keys: pure functions
verifier.py    checks entries against a signed checkpoint, offline: pure
models.py      the audit_log, audit_tree and audit_checkpoint tables
guards.py      the DDL that makes the database refuse UPDATE, DELETE and TRUNCATE
schemas.py     what the service takes and returns (queries, pages, proofs, reports)
stores/        where appends read and write: one interface, one module per driver
               (SQLAlchemy for db= and non-file SQLite, asyncpg, sqlite3), chosen once
log.py         AuditLog, the writer: group-commit append, signing; offers the reads below
reads.py       checkpoints, inclusion and consistency proofs, entries as leaf bytes
query.py       record queries by field, a page at a time, opaque cursors
fsck.py        whole-log checks (the hash chain, the tree against a checkpoint), export
packet.py      the disclosure packet's format and which entries belong to a case: pure
disclosure.py  builds one case's packet (proofs against one checkpoint) and its timeline
packet_verifier.py  verifies a packet offline; packet_html.py renders it for a reader
"""
