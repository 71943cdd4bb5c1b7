"""Leads: a match is only a lead until people verify it.

book.py      the pipeline's side: an identification's answer becomes leads (rows and
             their audit records, committed together before the answer leaves)
service.py   reviews, actions and authorisation decisions: keyword-only admin services,
             decided by the policy (gateway/policy/lead_input.py), recorded as they happen
reads.py     lists, one lead's view, per-vendor outcome counts
records.py   the one builder of lead, review, action and authorisation records
models.py    the tables (the candidate id lives only there)
"""
