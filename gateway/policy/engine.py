"""The policy engine interface and the service the pipeline decides with.

    PolicyEngine        evaluate(input document) -> the raw decision document, or None
    ├── EmbeddedEngine  regorus on the event loop's thread, inline (embedded.py)
    └── OpaServerEngine an OPA server over HTTP, awaited (opa_server.py)

    PolicyService       decide(PolicyInput) -> Decision, never raises; reload_if_changed();
                        activity_reads: the counts the serving revision reads

An engine is built from one PolicyBundle and evaluates that revision for its whole life;
a new revision gets a new engine. The service turns whatever an engine does into a
Decision: anything but a well-formed decision document, on time, is a refusal.

A revision serves only once its decision cases (policy_dir/cases) all pass on its own
engine and decide alike on the activity counts it declares alone as on every count
(cases.undeclared_reads): at start, or the service does not open (PolicyLoadError, so the
gateway does not start); at a reload, or it is refused, logged and recorded, and the
previous one keeps serving. With a PolicyJournal a revision also serves only once its text
and its activation are on record (at start, as soon as the database takes them).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.config import Settings
from gateway.context.activity import ActivityReads
from gateway.errors import Reason
from gateway.observability.metrics import observe_policy_evaluation
from gateway.policy.bundle import PolicyBundle, PolicyLoadError, bundle_revision, load_bundle
from gateway.policy.cases import (
    CASES_DIR,
    cases_digest,
    load_cases,
    run_cases,
    undeclared_reads,
)
from gateway.policy.contract import Decision, Obligations, strict_input_problems
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.lead_input import AnyPolicyInput
from gateway.policy.opa_server import OpaServerEngine
from gateway.policy.revisions import PolicyJournal

log = logging.getLogger(__name__)

# The revisions whose decision cases passed at a start of this process on the embedded engine,
# by (revision, digest of the cases, policy timeout): how many passed. regorus decides them
# in-process, the same way each time, so the same revision opened again with the same cases
# (a test suite's gateways, one after another) is not decided again. Only passes are kept.
_PASSED_AT_START: dict[tuple[str, str, float], int] = {}

# The reason codes of a refusal made because the policy could not decide.
POLICY_ERROR = "policy_error"
POLICY_TIMEOUT = "policy_timeout"
POLICY_UNDEFINED = "policy_undefined"
# The input is not one the policy contract allows (see contract.strict_input_problems).
POLICY_INPUT_INVALID = "policy_input_invalid"
FAILURE_CODES = frozenset({POLICY_ERROR, POLICY_TIMEOUT, POLICY_UNDEFINED, POLICY_INPUT_INVALID})
# The cases a refusal for an undeclared read names in its message (all are recorded): one
# such read can set nearly every case apart.
_CASES_NAMED = 3


class PolicyEngine(Protocol):
    """Evaluates `data.facegate.decision` of one bundle revision.

    activity_reads is what the revision's `data.facegate.activity_reads` holds, evaluated
    once when the engine is built (None: the policy defines none, and reads any count).
    evaluate() is given the input as a JSON document (`policy_input.model_dump(mode="json")`,
    made once per decision by PolicyService, which has checked it strict) and must not
    change it. It returns the decision document as the policy produced it (not yet
    checked), or None when the policy leaves it undefined for this input; or an awaitable
    of that, when the engine has to wait (on a server): only then is a timer set, a
    decision made inline being bounded by its lateness alone. It may raise anything and may
    take any time: PolicyService bounds and translates both. close() releases the engine's
    threads, connections or processes; it is called once no evaluation is running.
    """

    @property
    def name(self) -> str: ...

    @property
    def revision(self) -> str: ...

    @property
    def activity_reads(self) -> ActivityReads: ...

    def evaluate(self, document: dict[str, Any]) -> Any: ...

    async def close(self) -> None: ...


EngineFactory = Callable[[PolicyBundle], Awaitable[PolicyEngine]]


async def open_engine(bundle: PolicyBundle, settings: Settings) -> PolicyEngine:
    """The engine settings.policy_engine names, loaded with `bundle`. Raises PolicyLoadError."""
    if settings.policy_engine == "embedded":
        return EmbeddedEngine(bundle)
    if settings.opa_url:
        return await OpaServerEngine.connect(
            bundle, url=settings.opa_url, timeout_seconds=settings.policy_timeout_seconds
        )
    opa_binary = shutil.which("opa")
    if opa_binary is None:
        raise PolicyLoadError(
            "FACEGATE_POLICY_ENGINE=opa needs FACEGATE_OPA_URL or an `opa` binary on PATH"
        )
    return await OpaServerEngine.launch(
        bundle, opa_binary=opa_binary, timeout_seconds=settings.policy_timeout_seconds
    )


class _RawReason(BaseModel):
    code: str
    message: str


class _RawDecision(BaseModel):
    """The decision document as the policy must produce it. Validated strictly: "true" is
    not true, and an obligation of the wrong type is not silently converted."""

    model_config = ConfigDict(extra="ignore")

    allow: bool
    reasons: list[_RawReason]
    obligations: Obligations


def decision_from_result(result: Any, *, policy_revision: str, engine: str) -> Decision:
    """Check a raw decision document. Raises ValidationError when it is not one."""
    raw = _RawDecision.model_validate(result, strict=True)
    return Decision(
        allow=raw.allow,
        reasons=[Reason(code=r.code, message=r.message) for r in raw.reasons],
        obligations=raw.obligations,
        policy_revision=policy_revision,
        engine=engine,
    )


@dataclass(frozen=True)
class _CasesVerdict:
    """What a revision's decision cases say of it, decided on its own engine."""

    cases: int  # how many were decided
    error: str | None = None  # why the revision must not serve; None when it may
    failed_cases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReloadResult:
    """What reload_if_changed() found. `revision` is the one being served afterwards."""

    revision: str
    reloaded: bool = False
    error: str | None = None  # why the directory's revision is not served; the old one is


class _Serving:
    """An engine and the evaluations running on it, so it is closed only when idle."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()


class PolicyService:
    """What the pipeline holds: decide() always returns a Decision and fails closed.

    Open it with PolicyService.open(settings); the app calls reload_if_changed() now and
    then so an admin's edit of the policy directory takes effect, and close() on shutdown.
    """

    def __init__(
        self,
        *,
        engine: PolicyEngine,
        policy_dir: Path,
        engine_factory: EngineFactory,
        timeout_seconds: float,
        journal: PolicyJournal | None = None,
    ) -> None:
        self._serving = _Serving(engine)
        self._journal = journal
        # The bundle served since start, until its activation is on record.
        self._unrecorded: PolicyBundle | None = None
        self._policy_dir = policy_dir
        self._engine_factory = engine_factory
        self._timeout = timeout_seconds
        self._reload_lock = asyncio.Lock()
        # The engine a reload is testing, from when it is built until it serves or is
        # refused: requests gathered meanwhile gather its reads too (activity_reads).
        self._incoming: PolicyEngine | None = None
        # The last failed reload as ((revision or None, cases digest), why): a bundle that
        # failed is not tried again until its revision or its decision cases change.
        self._failed: tuple[tuple[str | None, str | None], str] | None = None
        # How many decision cases the revision served since start passed (0: not run).
        self._cases_at_start = 0

    @classmethod
    async def open(
        cls, settings: Settings, *, journal: PolicyJournal | None = None, check_cases: bool = True
    ) -> PolicyService:
        """Load settings.policy_dir on settings.policy_engine. Raises PolicyLoadError, also
        when the revision fails its decision cases or reads an activity count it does not
        declare (check_cases): what a reload refuses, a restart does not serve either.
        `facegate policy test`, which reports each case itself, opens with check_cases off.

        With a journal the revision's text and its activation are recorded now, or, if the
        database cannot take them yet, on each reload_if_changed() until it does: the
        gateway starts, and fails closed per request, with its database down (the cases
        need no database)."""

        async def factory(bundle: PolicyBundle) -> PolicyEngine:
            return await open_engine(bundle, settings)

        bundle = await asyncio.to_thread(load_bundle, settings.policy_dir)
        service = cls(
            engine=await factory(bundle),
            policy_dir=settings.policy_dir,
            engine_factory=factory,
            timeout_seconds=settings.policy_timeout_seconds,
            journal=journal,
        )
        if check_cases:
            service._cases_at_start = await service._check_at_start(bundle, settings)
        service._unrecorded = bundle
        await service._record_start()
        return service

    @property
    def revision(self) -> str:
        return self._serving.engine.revision

    @property
    def engine_name(self) -> str:
        return self._serving.engine.name

    @property
    def activity_reads(self) -> ActivityReads:
        """The activity counts the serving revision reads (None: every count), and while a
        reload tests a new revision, those it reads too: a request gathered then is decided
        by either. Step 3 gathers these and hands them to decide() as `gathered_reads`."""
        reads = self._serving.engine.activity_reads
        incoming = self._incoming
        if incoming is None or reads is None:
            return reads
        more = incoming.activity_reads
        return None if more is None else reads | more

    async def decide(
        self, policy_input: AnyPolicyInput, *, gathered_reads: ActivityReads = None
    ) -> Decision:
        """The policy's decision on `policy_input`. Never raises (except on cancellation):
        an input that is not strict (contract.strict_input_problems) is refused unevaluated
        with code policy_input_invalid; an engine that fails, overruns the timeout or gives
        no well-formed decision is a refusal with code policy_error, policy_timeout or
        policy_undefined.

        `gathered_reads` are the activity counts the input was gathered with (None: every
        count, or whatever the caller put in, as a decision case does). A revision that
        reads a count outside them would read 0 for it, so it does not decide: the request
        is refused with policy_input_invalid (a reload that reads more landed between
        gather and decide; the next request is gathered with the new reads)."""
        # Read once: the revision on the Decision is the one of the engine that made it,
        # even if a reload swaps engines while this evaluation runs.
        serving = self._serving
        engine = serving.engine
        serving.in_flight += 1
        serving.idle.clear()
        try:
            started = time.perf_counter()
            decision = await self._decide_on(engine, policy_input, gathered_reads)
            observe_policy_evaluation(
                engine.name,
                time.perf_counter() - started,
                failures=[r.code for r in decision.reasons if r.code in FAILURE_CODES],
            )
            return decision
        finally:
            serving.in_flight -= 1
            if serving.in_flight == 0:
                serving.idle.set()

    async def _decide_on(
        self,
        engine: PolicyEngine,
        policy_input: AnyPolicyInput,
        gathered_reads: ActivityReads = None,
        *,
        warn_not_strict: bool = True,
    ) -> Decision:
        def refuse(code: str, message: str) -> Decision:
            return Decision.deny(
                code=code, message=message, policy_revision=engine.revision, engine=engine.name
            )

        if gathered_reads is not None:
            reads = engine.activity_reads
            if reads is None or not reads <= gathered_reads:
                log.warning(
                    "policy %s reads activity counts the input was not gathered with",
                    engine.revision,
                )
                return refuse(
                    POLICY_INPUT_INVALID,
                    f"policy {engine.revision} reads activity counts this request was not"
                    " gathered with (the policy was reloaded meanwhile); the request is refused",
                )

        # Only a strict input is evaluated: on any other the engines could decide two ways
        # (see contract.STRICT_FIELDS), so it is refused, the same on every engine. The
        # document checked is the one the engine is given: one dump a decision, not two.
        document = policy_input.model_dump(mode="json", warnings=False)
        not_strict = strict_input_problems(document)
        if not_strict:
            if warn_not_strict:
                log.warning("policy input refused, not strict: %s", "; ".join(not_strict))
            return refuse(
                POLICY_INPUT_INVALID,
                "the policy input is not one the policy contract allows"
                f" ({'; '.join(not_strict)}); the request is refused",
            )

        started = time.monotonic()
        try:
            result = engine.evaluate(document)
            if inspect.isawaitable(result):
                # asyncio.timeout rather than wait_for: no task is made to run it. An engine
                # that answers inline (the embedded one) gets no timer at all: it could not
                # fire before the answer is in, and each one set and cancelled costs the
                # event loop too (issue 17).
                async with asyncio.timeout(self._timeout):
                    result = await result
        except TimeoutError:
            late = True
        except Exception as exc:
            log.exception("policy engine %s failed", engine.name)
            return refuse(
                POLICY_ERROR,
                f"the policy engine failed ({type(exc).__name__}); the request is refused",
            )
        else:
            # A decision that comes too late is refused too: the embedded engine evaluates
            # on this thread inline, with no timer, and an engine that does suspend may
            # resume past the deadline with it.
            late = time.monotonic() - started > self._timeout
        if late:
            log.warning("policy engine %s gave no decision within %ss", engine.name, self._timeout)
            return refuse(
                POLICY_TIMEOUT,
                f"the policy engine gave no decision within {self._timeout:g}s;"
                " the request is refused",
            )
        if result is None:
            log.warning("policy %s left data.facegate.decision undefined", engine.revision)
            return refuse(
                POLICY_UNDEFINED,
                "the policy gave no decision for this request; the request is refused",
            )
        try:
            return decision_from_result(result, policy_revision=engine.revision, engine=engine.name)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'decision'}: {error['msg']}"
                for error in exc.errors()
            )
            log.warning("policy %s gave a malformed decision: %s", engine.revision, problems)
            return refuse(
                POLICY_ERROR,
                f"the policy's decision is malformed ({problems}); the request is refused",
            )

    async def reload_if_changed(self) -> ReloadResult:
        """Serve the policy directory's current revision if it differs from the one served.

        Cheap when nothing changed: the module and data files are read and hashed, nothing
        is parsed. A bundle or engine that fails to load leaves the old engine serving, and
        the result says why. The swap is one assignment, so each decision is made wholly by
        the old engine or wholly by the new one; the old one is closed once it is idle.
        """
        async with self._reload_lock:
            await self._record_start()
            current = self._serving.engine.revision
            try:
                revision = await asyncio.to_thread(bundle_revision, self._policy_dir)
            except PolicyLoadError as exc:
                return await self._failed_reload(current, (None, None), error=exc.message)
            if revision == current:
                self._failed = None
                return ReloadResult(revision=current)
            # The cases are not part of the revision, so a fix to them alone is a new attempt.
            cases_dir = self._policy_dir / CASES_DIR
            attempt = (revision, await asyncio.to_thread(cases_digest, cases_dir))
            if self._failed is not None and self._failed[0] == attempt:
                return ReloadResult(revision=current, error=self._failed[1])

            try:
                bundle = await asyncio.to_thread(load_bundle, self._policy_dir)
                engine = await self._engine_factory(bundle)
            except PolicyLoadError as exc:
                return await self._failed_reload(current, attempt, error=exc.message)
            except Exception as exc:
                return await self._failed_reload(
                    current, attempt, error=f"{type(exc).__name__}: {exc}"
                )

            self._incoming = engine
            try:
                return await self._activate(bundle, engine, revision, current, attempt, cases_dir)
            finally:
                self._incoming = None

    async def _activate(
        self,
        bundle: PolicyBundle,
        engine: PolicyEngine,
        revision: str,
        current: str,
        attempt: tuple[str | None, str | None],
        cases_dir: Path,
    ) -> ReloadResult:
        """Serve `engine` once its decision cases pass and it is on record; else close it."""
        verdict = await self._check_cases(engine, cases_dir)
        if verdict.error is not None:
            await engine.close()
            return await self._failed_reload(
                current, attempt, error=verdict.error, failed_cases=verdict.failed_cases
            )

        # On record before it serves: if the text or the record cannot be written, the
        # previous revision keeps serving and the next poll tries again.
        if self._journal is not None:
            try:
                await self._journal.activated(bundle, replaces=current, cases=verdict.cases)
            except Exception as exc:
                await engine.close()
                log.exception("policy %s not activated: it could not be recorded", revision)
                return ReloadResult(
                    revision=current,
                    error=f"policy {revision} could not be recorded ({type(exc).__name__})",
                )

        old, self._serving = self._serving, _Serving(engine)
        log.info("policy reloaded: %s -> %s (%s)", current, engine.revision, engine.name)
        await self._retire(old)
        return ReloadResult(revision=engine.revision, reloaded=True)

    async def _check_at_start(self, bundle: PolicyBundle, settings: Settings) -> int:
        """How many decision cases the revision served at start passes. If it fails one, or
        reads a count it does not declare, the service is closed and PolicyLoadError says
        why."""
        engine = self._serving.engine
        cases_dir = settings.policy_dir / CASES_DIR
        remembered = engine.name == EmbeddedEngine.name
        key = (
            bundle.revision,
            await asyncio.to_thread(cases_digest, cases_dir),
            settings.policy_timeout_seconds,
        )
        if remembered and key in _PASSED_AT_START:
            return _PASSED_AT_START[key]
        verdict = await self._check_cases(engine, cases_dir)
        if verdict.error is not None:
            await self.close()
            raise PolicyLoadError(f"policy {bundle.revision} is not served: {verdict.error}")
        if remembered:
            _PASSED_AT_START[key] = verdict.cases
        return verdict.cases

    async def _check_cases(self, engine: PolicyEngine, cases_dir: Path) -> _CasesVerdict:
        """Decide the revision's own decision cases (`cases_dir`) on its own `engine`, then
        check that they decide alike on the activity counts it declares alone as on every
        count. The verdict's error says why it must not serve; each failed case is logged."""
        revision = engine.revision
        try:
            cases = await asyncio.to_thread(load_cases, cases_dir)
            results = await run_cases(partial(self._decide_case, engine), cases)
        except Exception as exc:
            return _CasesVerdict(0, exc.message if isinstance(exc, PolicyLoadError) else repr(exc))
        failed = [result for result in results if not result.passed]
        if failed:
            for result in failed:
                log.error("policy %s fails a decision case:\n%s", revision, result.report())
            return _CasesVerdict(
                len(results),
                error=f"{len(failed)} of {len(results)} decision cases fail on {revision}: "
                + "; ".join(repr(result.case.name) for result in failed),
                failed_cases=[result.case.name for result in failed],
            )

        # The revision is sent only the activity counts it declares: one that reads another
        # would read 0 there, and a limit on it would never fire. Its cases must decide alike
        # on the declared counts alone as on every count (cases.undeclared_reads).
        checked = [
            result.case
            for result in results
            if not any(reason.code == POLICY_INPUT_INVALID for reason in result.decision.reasons)
        ]
        try:
            misread = await undeclared_reads(
                partial(self._decide_case, engine), checked, engine.activity_reads
            )
        except Exception as exc:
            return _CasesVerdict(len(results), repr(exc))
        if misread:
            error = (
                f"policy {revision} reads activity counts it does not declare in"
                f" activity_reads: {len(misread)} of {len(checked)} decision cases decide"
                " otherwise when sent only the declared counts, as the gateway sends them, e.g. "
                + "; ".join(repr(name) for name in misread[:_CASES_NAMED])
                + ". Add each [scope, stream, window] a rule reads of input.activity to"
                " activity_reads, beside the rule"
            )
            return _CasesVerdict(len(results), error=error, failed_cases=misread)
        return _CasesVerdict(len(results))

    async def _decide_case(self, engine: PolicyEngine, policy_input: AnyPolicyInput) -> Decision:
        # The embedded engine evaluates without suspending, so a reload's decision cases
        # would otherwise hold the event loop for the whole run; requests wait for one case
        # at most.
        await asyncio.sleep(0)
        # Cases that hold an input the contract refuses expect that refusal: no warning.
        return await self._decide_on(engine, policy_input, warn_not_strict=False)

    async def _record_start(self) -> None:
        if self._unrecorded is None or self._journal is None:
            return
        try:
            await self._journal.activated(
                self._unrecorded, replaces=None, cases=self._cases_at_start
            )
        except Exception:
            log.exception(
                "the activation of policy %s at start is not recorded yet; will retry",
                self._unrecorded.revision,
            )
        else:
            self._unrecorded = None

    async def _failed_reload(
        self,
        current: str,
        attempt: tuple[str | None, str | None],
        *,
        error: str,
        failed_cases: list[str] | None = None,
    ) -> ReloadResult:
        """`attempt` is (revision, digest of its cases), the first None when the directory
        could not be read."""
        revision = attempt[0]
        # Logged and recorded once per distinct failure: this runs on every poll until the
        # admin fixes it.
        if self._failed != (attempt, error):
            log.error("policy not reloaded, still serving %s: %s", current, error)
            if self._journal is not None:
                try:
                    await self._journal.refused(
                        revision=revision,
                        serving=current,
                        error=error,
                        failed_cases=failed_cases or [],
                    )
                except Exception:
                    # The refusal stands; only its record is missing, so try again next poll.
                    log.exception("the refusal of policy %s could not be recorded", revision)
                    return ReloadResult(revision=current, error=error)
        self._failed = (attempt, error)
        return ReloadResult(revision=current, error=error)

    async def close(self) -> None:
        await self._retire(self._serving)

    @staticmethod
    async def _retire(serving: _Serving) -> None:
        # Evaluations are bounded by the timeout, so this wait is too.
        await serving.idle.wait()
        await serving.engine.close()
