"""Policy decisions: one engine interface, an embedded Rego engine and an OPA-server engine.

    contract.py    what goes in (PolicyInput) and comes out (Decision)
    bundle.py      a policy directory read once: module, data, revision
    engine.py      the PolicyEngine interface and PolicyService, what the pipeline decides with
    embedded.py    regorus, in-process
    opa_server.py  an OPA server, configured or started
    cases.py       decision cases (policies/cases/*.yaml) run on any engine
    codes.py       the reason codes a policy module's text can give

Importing this package imports none of them, so the contract stays cheap to import.
"""
