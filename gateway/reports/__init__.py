"""Reports from the audit log, every figure recomputable from an export at a signed checkpoint.

templates.py   report templates and settings: data under policies/reports/
query.py       the query vocabulary (where / group_by / one aggregate) and its evaluation
engine.py      every figure of a report in one streaming pass over the records
signals.py     misuse signals for auditors, each naming the log entries behind it
disclosure.py  what an audience sees: public aggregates, small counts suppressed
results.py     a figure as computed, before disclosure
periods.py     2026, 2026-Q4, 2026-11
sources.py     the records: from the live log (columns) or from an export (lines)
document.py    the report as published, and its digest
service.py     list, make (recorded in the log), the computation make and verify share
verify.py      recompute a report from an export and check its checkpoint
render.py      JSON, CSV, and one self-contained printable HTML page
"""
