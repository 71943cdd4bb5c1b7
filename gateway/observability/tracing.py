"""OpenTelemetry traces: off unless the standard OTEL_* environment variables switch them on.

    OTEL_SDK_DISABLED=true          off, whatever else is set
    OTEL_TRACES_EXPORTER=otlp       spans to OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT over
                                    OTLP/HTTP (pip install 'facegate[otlp]')
    OTEL_TRACES_EXPORTER=console    spans printed to stdout (trying it out)
    OTEL_EXPORTER_OTLP_ENDPOINT=... alone: as OTEL_TRACES_EXPORTER=otlp
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*
                                    read by the SDK itself

The SDK's own default exporter is otlp; facegate's is none, so that a gateway started
without a word about tracing sends nothing anywhere. Unconfigured, no span is started at
all (`tracing_on`): the API's no-op tracer still costs a context manager, a span object and
two context switches per span, about 3% of a request's CPU for eleven spans that go nowhere.
What the no-op spans did do is kept: a caller's traceparent (and tracestate, baggage) is
made current for the request (`caller_context`) and passed on to the vendor by
`client_span`, as the no-op tracer's non-recording spans passed it on.

Spans carry vendor, operation and step names and the request id, never a case number, an
officer, an image or a credential. The forward's CLIENT span (`client_span`) injects W3C
`traceparent` into the request to the vendor. It is added after a Rekognition request is
SigV4-signed, so it is not a signed header: the signature covers only the headers listed
in SignedHeaders, and the vendor checks exactly those.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator

log = logging.getLogger(__name__)

TRACER: Final = trace.get_tracer("gateway")
_configured: trace.TracerProvider | None = None
_provider_seen = False  # a global provider, once set, stays set (the API allows one)


def tracing_on() -> bool:
    """Whether a tracer provider that records spans is installed (by `configure_tracing`,
    or by anyone calling `trace.set_tracer_provider`, as tests do). Until then the global
    provider is the API's proxy, whose spans are no-ops: not worth starting."""
    global _provider_seen
    if not _provider_seen:
        provider = trace.get_tracer_provider()
        _provider_seen = not isinstance(
            provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        )
    return _provider_seen


def tracing_requested(environ: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for ("otlp", "console"), or None for no tracing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    if not exporters and (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        exporters = ["otlp"]
    exporters = [name for name in exporters if name != "none"]
    if not exporters:
        return None
    if len(exporters) > 1 or exporters[0] not in ("otlp", "console"):
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={environ.get('OTEL_TRACES_EXPORTER')!r}: facegate"
            " exports to one of otlp, console or none"
        )
    return exporters[0]


def configure_tracing(environ: Mapping[str, str] | None = None) -> str | None:
    """Install the global tracer provider the environment asks for, once per process.

    Returns the exporter's name, or None when tracing stays off. Raises ValueError for an
    exporter facegate does not know, and RuntimeError when otlp is asked for but its
    package is not installed: a trace the operator asked for is not dropped in silence.
    """
    global _configured
    exporter_name = tracing_requested(os.environ if environ is None else environ)
    if exporter_name is None or _configured is not None:
        return exporter_name
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'facegate[otlp]'"
            ) from exc
        exporter = OTLPSpanExporter()
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but attributes
    # passed to it win: facegate names itself only when the operator does not.
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "facegate"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = provider
    log.info("tracing on: spans exported with %s", exporter_name)
    return exporter_name


def shutdown_tracing() -> None:
    """Flush the spans still queued (at the end of the app's lifespan)."""
    provider = _configured
    if provider is not None and hasattr(provider, "force_flush"):
        provider.force_flush()


def extract(headers: Mapping[str, str]) -> Context:
    """The caller's trace context, when its request carries a traceparent."""
    return propagate.extract(headers)


def caller_context(headers: Mapping[str, str]) -> AbstractContextManager[None]:
    """With tracing off: the caller's trace context (when its request carries one) made
    current, so that `client_span` passes it on to the vendor unchanged. `headers` with
    lower-case names; a request without any of the propagator's headers (most) gets a
    shared context manager that does nothing."""
    if _fields(propagate.get_global_textmap()).isdisjoint(headers):
        return _NOTHING
    return _attached(propagate.extract(headers))


_NOTHING: Final[AbstractContextManager[None]] = nullcontext()


@functools.lru_cache(maxsize=4)
def _fields(textmap: TextMapPropagator) -> frozenset[str]:
    """The headers a propagator reads: its `fields` builds a new set at each call, and the
    global one is set once at start (or by a test), so each is read once."""
    return frozenset(textmap.fields)


@contextmanager
def _attached(context: Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def client_span(
    method: str, url: str, headers: MutableMapping[str, str], *, traced: bool | None = None
) -> Iterator[trace.Span]:
    """A CLIENT span around one request to a vendor, its context injected into `headers`.

    Call it with the headers as they will be sent, after any signing (see the module's
    docstring on SigV4). `traced` is whether spans are recorded, as decided once for the
    request being handled (`gateway.observability.requests.request_traced`); None asks
    `tracing_on`. With tracing off no span is started, and the caller's context, if any
    (`caller_context`), is what is injected."""
    if not (tracing_on() if traced is None else traced):
        propagate.inject(headers)
        yield trace.INVALID_SPAN
        return
    with TRACER.start_as_current_span(
        f"{method} vendor",
        kind=trace.SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
    ) as span:
        propagate.inject(headers)
        yield span
