# facegate's policy: who may use face recognition, for what, and on what terms.
#
# The lists and numbers live in data/*.yaml (read here as data.config); this file holds
# the rules. cases/*.yaml pin down what it decides: run them after every edit.
#
# Both the embedded engine (regorus) and OPA evaluate this file, so it keeps to what both
# do alike: messages are built with concat and format_int, never sprintf (regorus' sprintf
# drops the character after each verb), and no net.* builtins.
#
# Input and data are read by their full paths (input.operation.kind, data.config.patterns),
# never through a rule that only names a path (`op := input.operation`) or a function that
# only reads one: on regorus each such rule or call costs a decision about 2 us to evaluate,
# and every read through it more than the path itself (issue 17: the fourteen of them were
# 14% of the instructions of a decision; tests/policy/test_policy_cost.py keeps them out).
#
# regorus spends ~10k instructions on each definition of `deny` a decision reaches, even
# one whose first test fails, and more on each rule that definition reads. So (issue 17):
# - Rules that share a precondition (a warrant not active, an operation kind, attributes
#   asked for, faces named by id) add to a family set `deny_<family>`, gathered into deny
#   by one rule that tests the precondition once; each rule still tests it itself, so the
#   gate only saves work. tests/policy/test_policy_families.py fails on a family set no
#   gate gathers, and on any reason a family holds that the decision lacks.
# - A rule that reads a list from input through other rules first tests that the list has
#   entries (`count(object.get(input.operation, "images", [])) > 0`), so that on a request
#   without any those rules are never evaluated.
#
# Output: decision = {"allow", "reasons": [{"code", "message"}, ...] sorted by code,
#                     "obligations": {"min_threshold", "max_results", "max_faces",
#                                     "remove_attributes", "flags"}}
#         activity_reads = {[scope, stream, window], ...}: the activity counts the rules
#                     read, from data alone (see "mass-surveillance patterns" below); the
#                     gateway sends no other, and refuses a revision that reads another
# allow is true exactly when no rule below adds a reason to `deny`. A lead's review or
# action (input.kind) is decided by the rules at the end instead, from `lead_deny`.
package facegate

import rego.v1

decision := lead_decision if {
	lead_input
} else := call_decision

call_decision := {
	"allow": count(deny) == 0,
	"reasons": [r | some code in sort({d.code | some d in deny}); some r in deny; r.code == code],
	"obligations": object.union(obligations, authorisation_obligation),
}

reason(code, message) := {"code": code, "message": message}

normal(text) := lower(trim_space(text))

# Each list of bundle.py's PREPARED_SETS is read as a set, normalised: once at load when
# bundle.py could (object.keys of data.config.prepared[name]), else here on each evaluation
# (normal_set_now of its path in data.config). Each set is a rule of its own, not a call of
# one shared function: the call cost regorus more than the set (issue 17). (The
# comprehension is a function of its own: regorus 0.1.1 evaluates none in an else.)
normal_set_now(path) := {normal(x) | some x in object.get(data.config, path, [])}

# A context field counts as given only when it holds some text. One set built once per
# evaluation, read by membership: regorus spends ~12 us on each call of a function that
# looked a field up, and the rules below asked about a dozen times a decision.
given_fields := {field | some field, value in input.context; is_string(value); trim_space(value) != ""}

# The three stated codes, normalised as `normal` would, written out: a call of it cost
# regorus more than the builtins it runs (issue 17).
basis := lower(trim_space(input.context.legal_basis)) if "legal_basis" in given_fields

stated_purpose := lower(trim_space(input.context.purpose)) if "purpose" in given_fields

stated_offense := lower(trim_space(input.context.offense)) if "offense" in given_fields

# --- Who: only officers make vendor calls ------------------------------------------------

deny contains reason("not_an_officer", concat("", [
	"only officers may use face recognition, and ", input.principal.id, " is not one",
])) if {
	not "officer" in input.principal.roles
}

# --- Why: every call states its purpose, case, offense and legal basis --------------------

# The reasons written out as `reason` would build them: its four calls cost regorus more
# than the rest of this rule, on every decision (issue 17).
required := {
	"purpose": {"code": "missing_purpose", "message": "no purpose was given for this request"},
	"case_number": {"code": "missing_case_number", "message": "no case number was given for this request"},
	"offense": {"code": "missing_offense", "message": "no offense was given for this request"},
	"legal_basis": {"code": "missing_legal_basis", "message": "no legal basis was given for this request"},
}

deny contains missing if {
	some field in object.keys(required) - given_fields
	missing := required[field]
}

# A rule that refuses what is not in a prepared set first looks it up in the prepared set
# itself: found there, the rule fails without evaluating the set's rule (which cost regorus
# more than the rest of the rule); not found, or not prepared, the set decides as before.
allowed_purposes := object.keys(data.config.prepared.purposes) if {
	data.config.prepared.purposes
} else := normal_set_now(["purposes"])

deny contains reason("purpose_not_allowed", concat("", [
	"purpose \"", input.context.purpose, "\" is not one face recognition may be used for (allowed: ",
	concat(", ", sort(allowed_purposes)), ")",
])) if {
	purpose := stated_purpose
	not data.config.prepared.purposes[purpose]
	not purpose in allowed_purposes
}

allowed_offenses := object.keys(data.config.prepared.offenses) if {
	data.config.prepared.offenses
} else := normal_set_now(["offenses"])

deny contains reason("offense_not_allowed", concat("", [
	"offense \"", input.context.offense, "\" is not on the list of offenses face recognition may be used for",
])) if {
	offense := stated_offense
	not data.config.prepared.offenses[offense]
	not offense in allowed_offenses
}

serious_offenses := object.keys(data.config.prepared.serious_offenses) if {
	data.config.prepared.serious_offenses
} else := normal_set_now(["identification", "serious_offenses"])

deny contains reason("offense_not_serious_enough", concat("", [
	"identification is limited to serious violent offenses, and \"", input.context.offense,
	"\" is not one of them",
])) if {
	identification
	offense := stated_offense
	not data.config.prepared.serious_offenses[offense]
	offense in allowed_offenses
	not offense in serious_offenses
}

# Headers may complete the case session the credentials are bound to, never contradict it.
deny contains reason("context_conflict", concat("", [
	"the X-Facegate headers contradict the case session on: ",
	concat(", ", sort(input.context.conflicts)),
])) if {
	count(input.context.conflicts) > 0
}

# --- Identification (1:N) needs a warrant in force, or an exigent basis --------------------

warrant_bases := object.keys(data.config.prepared.warrant_bases) if {
	data.config.prepared.warrant_bases
} else := normal_set_now(["identification", "warrant_bases"])

# basis -> the flag an identification on it carries, e.g. exigent_needs_authorisation.
warrantless_flags := data.config.prepared.warrantless_flags if {
	data.config.prepared.warrantless_flags
} else := warrantless_flags_now

warrantless_flags_now := {normal(b): flag | some b, flag in data.config.identification.without_warrant}

warrantless_bases := {b | some b, _ in warrantless_flags}

needs_warrant if {
	identification
	basis in warrant_bases
}

warrant_noun := "court order" if {
	input.context.warrant.kind == "court_order"
} else := "warrant"

warrant_name := concat(" ", [warrant_noun, input.context.warrant.id]) if {
	is_string(input.context.warrant.id)
} else := concat(" ", [warrant_noun, input.context.warrant_id]) if {
	"warrant_id" in given_fields
} else := concat(" ", ["the named", warrant_noun])

deny_warrant_not_active contains reason("warrant_required", concat("", [
	"identification on legal basis ", basis, " needs a warrant or court order, and none was named",
])) if {
	needs_warrant
	# Any status other than the known ones is treated as no warrant, never as one.
	not input.context.warrant.status in {"active", "unknown", "expired", "revoked", "out_of_scope"}
}

deny contains reason("warrant_required", concat("", [
	"identification needs a warrant or court order, and legal basis ", basis,
	" does not allow it",
])) if {
	identification
	"legal_basis" in given_fields
	not data.config.prepared.warrant_bases[basis]
	not basis in warrant_bases
	not basis in warrantless_bases
}

# The rules above that need a warrant found not active (or none), and those below.
deny contains r if {
	not input.context.warrant.status == "active"
	some r in deny_warrant_not_active
}

# How a warrant that is not active is described, by registry status.
warrant_states := {
	"unknown": "is not in the warrant registry",
	"expired": "is not in force now",
	"revoked": "has been revoked",
	"out_of_scope": "does not cover this search",
}

deny_warrant_not_active contains reason("warrant_unknown", concat(" ", [warrant_name, warrant_states.unknown])) if {
	needs_warrant
	input.context.warrant.status == "unknown"
}

deny_warrant_not_active contains reason("warrant_expired", concat(" ", [warrant_name, warrant_states.expired])) if {
	needs_warrant
	input.context.warrant.status == "expired"
}

deny_warrant_not_active contains reason("warrant_revoked", concat(" ", [warrant_name, warrant_states.revoked])) if {
	needs_warrant
	input.context.warrant.status == "revoked"
}

deny_warrant_not_active contains reason("warrant_out_of_scope", concat("", [
	warrant_name, " ", warrant_states.out_of_scope, scope_detail,
])) if {
	needs_warrant
	input.context.warrant.status == "out_of_scope"
}

# The registry decided the warrant is out of scope; say where, when the input shows it.
scope_gaps contains concat("", ["it does not authorise ", input.operation.kind]) if {
	not input.operation.kind in input.context.warrant.operations
}

scope_gaps contains concat("", ["it does not cover collection ", input.operation.collection]) if {
	count(input.context.warrant.collections) > 0
	is_string(input.operation.collection)
	not input.operation.collection in input.context.warrant.collections
}

scope_gaps contains concat("", ["it was issued for case ", input.context.warrant.case_number]) if {
	is_string(input.context.warrant.case_number)
	"case_number" in given_fields
	input.context.warrant.case_number != input.context.case_number
}

scope_detail := concat("", [": ", concat("; ", sort(scope_gaps))]) if {
	count(scope_gaps) > 0
} else := ""

flags contains warrantless_flags[basis] if {
	identification
}

# --- Real-time and video use needs a court order that says so -----------------------------

realtime_authorised if {
	basis == "court_order"
	input.context.warrant.kind == "court_order"
	input.context.warrant.status == "active"
	input.context.warrant.realtime == true
}

realtime_gap := concat("", ["the legal basis given is ", basis]) if {
	"legal_basis" in given_fields
	basis != "court_order"
} else := "no legal basis was given" if {
	not "legal_basis" in given_fields
} else := "no court order was named" if {
	input.context.warrant.status == "none"
} else := concat(" ", [warrant_name, object.get(warrant_states, input.context.warrant.status, "is not active")]) if {
	input.context.warrant.status != "active"
} else := concat("", [warrant_name, " is not a court order"]) if {
	input.context.warrant.kind != "court_order"
} else := concat("", [warrant_name, " does not authorise real-time use"])

deny_kind contains reason("realtime_requires_court_order", concat("", [
	"real-time and video face recognition needs an active court order that authorises",
	" real-time use: ", realtime_gap,
])) if {
	input.operation.kind == "stream"
	not realtime_authorised
}

# The rules of one kind of operation: real-time (above), celebrity (below) and enrolment
# (watchlist_building, with the mass-surveillance patterns).
deny contains r if {
	input.operation.kind in {"stream", "celebrity", "enroll"}
	some r in deny_kind
}

# --- Never ---------------------------------------------------------------------------------

deny_kind contains reason(
	"celebrity_recognition_refused",
	"celebrity recognition is not an investigative tool and is never allowed",
) if {
	input.operation.kind == "celebrity"
}

forbidden_attributes := object.keys(data.config.prepared.forbidden_attributes) if {
	data.config.prepared.forbidden_attributes
} else := normal_set_now(["attributes", "forbidden"])

requested_forbidden := {a | some asked in input.operation.attributes; a := normal(asked); a in forbidden_attributes}

deny_attributes contains reason("forbidden_attributes", concat("", [
	"face attributes refused: ", concat(", ", sort(requested_forbidden)), "; ",
	data.config.attributes.why_forbidden,
])) if {
	count(requested_forbidden) > 0
}

# The rules on face attributes asked for: forbidden_attributes above, face_template_requested
# with the answers below.
deny contains r if {
	count(input.operation.attributes) > 0
	some r in deny_attributes
}

# --- Obligations on an allowed call -------------------------------------------------------

removed_attributes := object.keys(data.config.prepared.removed_attributes) if {
	data.config.prepared.removed_attributes
} else := normal_set_now(["attributes", "removed_from_responses"])

obligations := {
	"min_threshold": object.get(data.config.obligations.min_threshold, input.operation.kind, null),
	"max_results": object.get(data.config.obligations.max_results, input.operation.kind, null),
	"max_faces": object.get(data.config.obligations.max_faces, input.operation.kind, null),
	"remove_attributes": sort(removed_attributes),
	"flags": sort(flags),
}

# --- Which vendor: identification only through one with a recent accuracy attestation -------
#
# input.vendor is the backend's entry in the vendor inventory. The attestation named in
# data/vendors.yaml (e.g. the date and source of the vendor's latest independent demographic
# accuracy test, such as NIST FRTE) must be there, readable and recent enough.

vendor_name := input.vendor.name if {
	is_string(input.vendor.name)
} else := "a vendor missing from the inventory"

# Engines differ on a failed parse (OPA: undefined; regorus: an error), so only a time both
# parse may reach it: the gateway refuses an input whose attestation date is anything but
# an RFC 3339 UTC time before the policy reads it (contract.STRICT_FIELDS), as it does the
# lead's deadline below. (The regex.match that checked the shape here as well cost more
# than the rest of the rule: regorus compiles the expression on every evaluation.)
attested_at := time.parse_rfc3339_ns(attestation.date) if {
	attestation := input.vendor.attestations[data.config.vendors.identification_attestation]
	is_string(attestation.date)
	is_string(attestation.source)
	trim_space(attestation.source) != ""
}

deny contains reason("vendor_attestation_missing", concat("", [
	"identification through ", vendor_name, " needs a ", data.config.vendors.identification_attestation,
	" attestation in the vendor inventory, and there is none",
])) if {
	identification
	not attested_at
}

# Compared in nanoseconds, not divided into days: regorus divides its numbers as exact
# decimals, and the one division cost a decision more than the rest of the rule (issue 17).
# The same comparison, multiplied out: age / day > limit exactly when age > limit * day.
# Written out (24 * 60 * 60 * 10^9): regorus multiplied it out on every evaluation.
ns_per_day := 86400000000000

deny contains reason("vendor_attestation_stale", concat("", [
	"identification through ", vendor_name, " needs a ", data.config.vendors.identification_attestation,
	" no older than ", format_int(data.config.vendors.max_attestation_age_days, 10),
	" days, and the latest is dated ", substring(attestation.date, 0, 10),
])) if {
	identification
	now_ns - attested_at > data.config.vendors.max_attestation_age_days * ns_per_day
	attestation := input.vendor.attestations[data.config.vendors.identification_attestation]
}

# --- mass-surveillance patterns (issue 4) ---------------------------------------------------
#
# A single search can be lawful while the pattern of many is surveillance. These rules read
# what step 3 gathered: operation.faces_in_probe (faces the gateway counted in the probe),
# context.locations (EXIF GPS and X-Facegate-Location, each {"lat", "lon"}) and activity
# (sliding-window counts that include this request; see gateway/context/activity.py). The
# limits are data.config.patterns (data/patterns.yaml), the places data.config.zones
# (data/zones.yaml, a GeoJSON FeatureCollection).

# A sliding-window count is read as object.get(input.activity, [scope, stream, window], 0):
# 0 when the gateway sent none (e.g. a decision case without them). (Not a function of its
# own: see the top of this file.)
#
# The gateway sends only the counts this policy declares it reads: every rule that reads
# input.activity adds what it reads to `activity_reads`, beside it, from the same data, as
# [scope, stream, window]. It depends on data alone, so the gateway evaluates it once per
# revision (on an empty input) and reads back only those counts; a policy without it is
# sent every count. A count read but not declared would read 0, which no limit catches:
# tests/policy/test_activity_reads.py decides every decision case, and generated counts,
# on the full activity and on the declared part alone, and they must agree. A reload does
# the same before a revision serves: each decision case (vendor calls) with the declared
# counts high and every other count missing, high, or 0; a revision that decides any of
# them otherwise is refused, naming the cases, and the previous one keeps serving. The
# scopes, streams and windows the gateway counts are in gateway/context/activity/;
# declaring any other refuses the revision at load.

window_words := {
	"second": "one second",
	"ten_seconds": "ten seconds",
	"minute": "one minute",
	"hour": "one hour",
	"day": "one day",
}

window_text(window) := object.get(window_words, window, window)

scope_text("officer") := concat(" ", ["officer", input.principal.id])

scope_text("agency") := concat(" ", ["agency", input.principal.agency])

scope_text("case") := concat(" ", ["case", input.context.case_number]) if {
	"case_number" in given_fields
} else := "this case"

# Crowd scan: a call that identifies, verifies or enrols through an image holding more faces
# than one suspect and company. Every image of the call counts, whatever its role: a crowd
# as CompareFaces' TargetImage locates the person in it as surely as a crowd as the probe of
# a search, and a crowd enrolled puts everyone in it on a watchlist. op.images lists each
# image the gateway inspected ({"role", "faces", ...}); without it, op.faces_in_probe.
crowd_limit(kind) := object.get(
	object.get(data.config.patterns.crowd_scan, "max_faces_per_image", {}), kind,
	data.config.patterns.crowd_scan.max_faces_in_probe,
)

image_words := {
	"probe": "the probe",
	"source": "the source image",
	"target": "the target image",
	"enrolment": "the enrolment image",
}

image_text(role) := object.get(image_words, role, concat(" ", ["the", role, "image"]))

kind_words := {"identify": "an identification", "verify": "a verification", "enroll": "an enrolment"}

crowd_effects := {
	"identify": "searching a crowd photo against a database identifies everyone in it",
	"verify": "comparing a face against a crowd photo finds the person in the crowd",
	"enroll": "enrolling a crowd photo puts everyone in it on a watchlist",
}

counted_images := [img | some img in object.get(input.operation, "images", []); is_number(img.faces)]

# The image with the most faces (the first of equals), so that one reason names one image.
crowd_image := counted_images[i] if {
	most := max([img.faces | some img in counted_images])
	i := min({j | some j, img in counted_images; img.faces == most})
}

crowd_message(role, faces, limit) := concat("", [
	image_text(role), " holds ", format_int(faces, 10), " faces, more than the ",
	format_int(limit, 10), " ", object.get(kind_words, input.operation.kind, input.operation.kind),
	" may hold in any one image: ", object.get(crowd_effects, input.operation.kind, "that is a crowd scan"),
])

# The limit is looked up only once an image's faces are known: a request whose images were
# not inspected (no counts) stops at the first cheap test.
deny contains reason("crowd_scan", crowd_message(crowd_image.role, crowd_image.faces, limit)) if {
	count(object.get(input.operation, "images", [])) > 0
	faces := crowd_image.faces
	crowd_kind
	limit := crowd_limit(input.operation.kind)
	faces > limit
}

deny contains reason("crowd_scan", crowd_message("probe", input.operation.faces_in_probe, limit)) if {
	is_number(input.operation.faces_in_probe)
	crowd_kind
	count(counted_images) == 0
	limit := crowd_limit(input.operation.kind)
	input.operation.faces_in_probe > limit
}

# Burst: probes arriving faster than a person compares photos (frames of a video).
deny contains reason("burst", concat("", [
	scope_text(scope), " sent ", format_int(n, 10), " probe images within ",
	window_text(data.config.patterns.burst.window), " (at most ", format_int(limit, 10),
	"): frames of a video sent one by one are video surveillance",
])) if {
	count(input.operation.probe_digests) > 0
	some scope, limit in data.config.patterns.burst.max_probes
	n := object.get(input.activity, [scope, "probes", data.config.patterns.burst.window], 0)
	n > limit
}

activity_reads contains [scope, "probes", data.config.patterns.burst.window] if {
	some scope, _ in data.config.patterns.burst.max_probes
}

# Sweep: one officer identifying across many unrelated cases.
deny contains reason("sweep_across_cases", concat("", [
	scope_text("officer"), " has searched in ", format_int(n, 10), " different cases within ",
	window_text(data.config.patterns.sweep.window), " (at most ", format_int(limit, 10),
	"): identification is for the case at hand, not a sweep",
])) if {
	identification
	limit := data.config.patterns.sweep.max_cases_per_officer
	n := object.get(input.activity, ["officer", "distinct_cases", data.config.patterns.sweep.window], 0)
	n > limit
}

activity_reads contains ["officer", "distinct_cases", data.config.patterns.sweep.window]

# Sweep: one face searched under many cases, which tracks a person rather than a crime.
deny contains reason("probe_across_cases", concat("", [
	"this probe has been searched under ", format_int(n, 10), " different cases within ",
	window_text(data.config.patterns.sweep.window), " (at most ", format_int(limit, 10),
	"): searching one face case after case is persistent tracking",
])) if {
	identification
	limit := data.config.patterns.sweep.max_cases_per_probe
	n := object.get(input.activity, ["probe", "distinct_cases", data.config.patterns.sweep.window], 0)
	n > limit
}

activity_reads contains ["probe", "distinct_cases", data.config.patterns.sweep.window]

# Watchlist building: enrolling faces beyond a case's needs, unless a warrant covers it.
enrolment_authorised if {
	input.context.warrant.status == "active"
	"enroll" in input.context.warrant.operations
}

deny_kind contains reason("watchlist_building", concat("", [
	scope_text(scope), " has enrolled ", format_int(n, 10), " faces within ",
	window_text(data.config.patterns.watchlist.window), " (at most ", format_int(limit, 10),
	" without a warrant that covers enrolment): that builds a watchlist",
])) if {
	input.operation.kind == "enroll"
	not enrolment_authorised
	some scope, limit in data.config.patterns.watchlist.max_enrolments
	n := object.get(input.activity, [scope, "enrolments", data.config.patterns.watchlist.window], 0)
	n > limit
}

activity_reads contains [scope, "enrolments", data.config.patterns.watchlist.window] if {
	some scope, _ in data.config.patterns.watchlist.max_enrolments
}

# Rate limits on every vendor call, per officer and per agency.
deny contains reason("rate_limit_exceeded", concat("", [
	scope_text(scope), " has made ", format_int(n, 10), " requests within ",
	window_text(window), " (at most ", format_int(limit, 10), ")",
])) if {
	some scope, limits in data.config.patterns.rate_limits
	some window, limit in limits
	n := object.get(input.activity, [scope, "requests", window], 0)
	n > limit
}

activity_reads contains [scope, "requests", window] if {
	some scope, limits in data.config.patterns.rate_limits
	some window, _ in limits
}

# Protected places and times: a probe taken inside a configured zone (a protest while it
# lasts, a place of worship, a clinic) is refused. Zones are GeoJSON Features, Polygon or
# MultiPolygon ([lon, lat] as GeoJSON orders them); properties: name, category, why, and
# optional windows [{from, until}] (RFC 3339); a zone without windows is always protected.

stated_locations contains loc if {
	some loc in object.get(input.context, "locations", [])
}

# Ray casting: a horizontal ray from the point crosses the ring's edges an odd number of
# times when the point is inside. No division by zero: the two ends straddle the point's y.
ring_crossings(ring, p) := count([i |
	some i in numbers.range(0, count(ring) - 2)
	a := ring[i]
	b := ring[i + 1]
	count([y | some y in [a[1], b[1]]; y > p[1]]) == 1
	p[0] < (((b[0] - a[0]) * (p[1] - a[1])) / (b[1] - a[1])) + a[0]
])

in_ring(ring, p) if ring_crossings(ring, p) % 2 == 1

in_hole(rings, p) if {
	some i, ring in rings
	i > 0
	in_ring(ring, p)
}

in_polygon(rings, p) if {
	in_ring(rings[0], p)
	not in_hole(rings, p)
}

in_zone(zone, p) if {
	zone.geometry.type == "Polygon"
	in_polygon(zone.geometry.coordinates, p)
}

in_zone(zone, p) if {
	zone.geometry.type == "MultiPolygon"
	some polygon in zone.geometry.coordinates
	in_polygon(polygon, p)
}

now_ns := time.parse_rfc3339_ns(input.now)

zone_windows(zone) := object.get(zone.properties, "windows", [])

active_windows(zone) := [w |
	some w in zone_windows(zone)
	time.parse_rfc3339_ns(w.from) <= now_ns
	now_ns < time.parse_rfc3339_ns(w.until)
]

zone_active(zone) if count(zone_windows(zone)) == 0

zone_active(zone) if count(active_windows(zone)) > 0

# The window in force, for the message; "" for a zone protected at all times.
zone_window_text(zone) := "" if {
	count(zone_windows(zone)) == 0
} else := concat("", [" (protected from ", w.from, " until ", w.until, ")"]) if {
	w := active_windows(zone)[0]
}

deny contains reason("protected_place", concat("", [
	"the probe was taken at ", zone.properties.name, ", a ", zone.properties.category,
	zone_window_text(zone), ": ", zone.properties.why,
])) if {
	count(object.get(input.context, "locations", [])) > 0
	some loc in stated_locations
	some zone in data.config.zones.features
	in_zone(zone, [loc.lon, loc.lat])
	zone_active(zone)
}

# --- Answers: no face template leaves facegate (issue 10) -----------------------------------
#
# A template (an embedding) matched offline identifies outside the log. The options that ask
# a vendor for templates are listed in data/templates.yaml, by the adapters' normalised names;
# adapters also strip templates from every answer, whatever this rule says. The most faces
# and matches an answer may hold are the obligations max_faces and max_results above.

template_options := object.keys(data.config.prepared.template_options) if {
	data.config.prepared.template_options
} else := normal_set_now(["templates", "options"])

requested_templates := {a | some asked in input.operation.attributes; a := normal(asked); a in template_options}

deny_attributes contains reason("face_template_requested", concat("", [
	"face templates refused: ", concat(", ", sort(requested_templates)), "; ",
	data.config.templates.why,
])) if {
	count(requested_templates) > 0
}

# --- Classification by effect: what a call reveals, whatever it is called (issue 10) ------
#
# Identification is any call that can tell who a face is: a 1:N search, and also a loop of
# 1:1 comparisons against stored identities (an Azure person, a CompreFace example). The
# rules above that say `identification` hold for both. Verification stays what the law
# means by it, confirming one person against one stated identity: a comparison is
# identification once the distinct stored identities compared within the window (activity
# stream distinct_identities, this request included) exceed data.config.identities.
#
# Faces named by an id a vendor handed out (operation.face_sources, gathered in step 3 from
# gateway/context/face_sources.py) carry the image they came from: a face from a crowd photo
# is a crowd scan however few are searched at once, and so is searching one image's faces
# one by one (activity "source" distinct_faces). A face id facegate never saw come back has
# no known source, and identification by it is refused: facegate cannot count its crowd.

identities_beyond_verification contains scope if {
	count(object.get(input.operation, "compared_identities", [])) > 0
	some scope, limit in data.config.identities.verification.max_identities
	object.get(input.activity, [scope, "distinct_identities", data.config.identities.verification.window], 0) > limit
}

activity_reads contains [scope, "distinct_identities", data.config.identities.verification.window] if {
	some scope, _ in data.config.identities.verification.max_identities
}

identification if input.operation.kind == "identify"

identification if {
	count(object.get(input.operation, "compared_identities", [])) > 0
	count(identities_beyond_verification) > 0
}

# On record: a call named a verification that was judged as the identification it is.
flags contains "identification_by_comparison" if {
	identification
	input.operation.kind != "identify"
}

# The kinds the crowd rules apply to, a comparison that is identification among them.
# (Lists in data and input are read with `in` as they are, here and below: a set built
# from one was built anew on every evaluation.)
crowd_kind if input.operation.kind in data.config.patterns.crowd_scan.kinds

crowd_kind if {
	identification
	"identify" in data.config.patterns.crowd_scan.kinds
}

# Faces named by id meet the crowd rules in every comparison listed in the data (a
# verification of a suspect against each face of a crowd locates them in it), and in any
# identification.
face_crowd_kind if crowd_kind

face_crowd_kind if input.operation.kind in data.config.identities.face_sources.kinds

crowd_source_counts := {n |
	some face in object.get(input.operation, "face_sources", [])
	n := face.faces_in_source
	is_number(n)
}

deny_face_ids contains reason("crowd_scan", concat("", [
	"a face named by id comes from an image of ", format_int(n, 10),
	" faces and an identification may search at most ",
	format_int(data.config.patterns.crowd_scan.max_faces_in_probe, 10),
	": searching a crowd's faces by id identifies everyone in it",
])) if {
	count(crowd_source_counts) > 0
	face_crowd_kind
	n := max(crowd_source_counts)
	n > data.config.patterns.crowd_scan.max_faces_in_probe
}

deny_face_ids contains reason("crowd_scan", concat("", [
	format_int(n, 10), " faces of one image have been searched by id within ",
	window_text(data.config.identities.face_sources.window), " (at most ",
	format_int(data.config.patterns.crowd_scan.max_faces_in_probe, 10),
	"): searching a crowd's faces one by one is a crowd scan",
])) if {
	count(object.get(input.operation, "face_sources", [])) > 0
	face_crowd_kind
	n := object.get(input.activity, ["source", "distinct_faces", data.config.identities.face_sources.window], 0)
	n > data.config.patterns.crowd_scan.max_faces_in_probe
}

activity_reads contains ["source", "distinct_faces", data.config.identities.face_sources.window]

unknown_face_sources := [face.face |
	some face in object.get(input.operation, "face_sources", [])
	not is_string(face.source)
]

deny_face_ids contains reason("face_source_unknown", concat("", [
	"identification by face id needs faces facegate handed out itself within the last day, and ",
	format_int(count(unknown_face_sources), 10), " named here were not",
	" (enrolled around facegate, or older): search by the image, so that its faces are counted",
])) if {
	identification
	count(unknown_face_sources) > 0
}

deny contains r if {
	count(object.get(input.operation, "face_sources", [])) > 0
	some r in deny_face_ids
}

# --- Warrants are their agency's, reference data its custodians' (issue 10, detours 6-10) ---
#
# The registry reports whose a warrant is (context.warrant.agency, .officers, .created_by);
# these rules decide who may rely on it. A warrant is used whenever a request names one the
# registry holds, whatever its status: naming it is how a header or session borrows it.
# Role names and the operations that change reference data are data.config.roles
# (data/roles.yaml).

warrant_found if input.context.warrant.status in {"active", "expired", "revoked", "out_of_scope"}

# A warrant bound to no agency (registered before warrants were bound to one) is no one's.
deny contains reason("warrant_other_agency", concat("", [
	warrant_name, " is bound to no agency (it was registered before warrants were bound to",
	" one): register it again for the agency whose officers may use it",
])) if {
	warrant_found
	not is_string(input.context.warrant.agency)
}

deny contains reason("warrant_other_agency", concat("", [
	warrant_name, " was issued to ", input.context.warrant.agency, ", and ", input.principal.id, " is of ",
	input.principal.agency, ": a warrant is used only by its own agency",
])) if {
	warrant_found
	is_string(input.context.warrant.agency)
	input.context.warrant.agency != input.principal.agency
}

deny contains reason("warrant_not_for_officer", concat("", [
	warrant_name, " names the officers who may use it (", concat(", ", sort(input.context.warrant.officers)),
	"), and ", input.principal.id, " is not one of them",
])) if {
	warrant_found
	count(input.context.warrant.officers) > 0
	not input.principal.id in input.context.warrant.officers
}

deny contains reason("warrant_self_issued", concat("", [
	warrant_name, " was registered by ", input.principal.id,
	" itself: the one who registers a warrant may not search under it",
])) if {
	warrant_found
	input.context.warrant.created_by == input.principal.id
}

# One person is never both sides: whoever registers warrants and enrols principals does not
# also search. Refused at enrolment; this catches principals enrolled before that rule.
deny contains reason("admin_and_officer", concat("", [
	input.principal.id, " holds both the ", data.config.roles.admin, " and the ", data.config.roles.officer,
	" roles: the one who registers warrants may not also use them; split the roles between",
	" two principals",
])) if {
	data.config.roles.admin in input.principal.roles
	data.config.roles.officer in input.principal.roles
}

# An identification names the collection it searches, and its warrant must cover that one:
# comparing a probe against faces named ad hoc (Azure FindSimilar over faceIds) names none,
# so no collection-scoped warrant covers it (the registry reports it out of scope).
scope_gaps contains "the request names no collection, and an identification must name one the warrant covers" if {
	identification
	not is_string(input.operation.collection)
}

# Planting a face in a reference collection makes a later false lead; deleting one destroys
# evidence. Enrolment and every change to reference data need the custodian role, or for
# enrolment a warrant that covers it; reading them stays open to officers.
changes_reference_data if input.operation.kind == "enroll"

changes_reference_data if input.operation.name in object.get(data.config.roles.reference_changes, input.operation.vendor, [])

reference_change_authorised if data.config.roles.custodian in input.principal.roles

reference_change_authorised if {
	input.operation.kind == "enroll"
	input.context.warrant.status == "active"
	"enroll" in input.context.warrant.operations
}

deny contains reason("reference_data_change_refused", concat("", [
	input.operation.name, " changes the reference collection", reference_collection_text,
	": that needs the ", data.config.roles.custodian, " role",
	enrolment_alternative, ", and ", input.principal.id, " has neither",
])) if {
	changes_reference_data
	not reference_change_authorised
}

reference_collection_text := concat("", [" ", input.operation.collection]) if {
	is_string(input.operation.collection)
} else := "s"

enrolment_alternative := " or a warrant that covers enrolment" if {
	input.operation.kind == "enroll"
} else := ""

# --- After-the-fact authorisation of searches without a warrant -----------------------------
#
# A search on a basis that must be authorised afterwards (data/leads.yaml, e.g. exigent)
# opens a clock: 24 h for real-time use, 48 h for post-remote identification (EU AI Act
# Art. 5(3), 26(10)). Once an authority refused one in a case, that case's next search on
# that basis is refused.

authorisation_flag := flag if {
	some flag in flags
	data.config.leads.authorisation.flags[flag]
}

authorisation_clock := "realtime" if input.operation.kind == "stream" else := "post_remote"

authorisation_obligation := {"authorisation": {
	"basis": data.config.leads.authorisation.flags[authorisation_flag],
	"hours": data.config.leads.authorisation.clock_hours[authorisation_clock],
}} if {
	authorisation_flag
} else := {}

refused_bases := {normal(b) | some b in object.get(input.context, "refused_authorisations", [])}

deny contains reason("authorisation_refused", concat("", [
	"an authority refused the after-the-fact authorisation of an earlier ", basis,
	" search in case ", input.context.case_number, ": no further search on that basis",
])) if {
	identification
	count(object.get(input.context, "refused_authorisations", [])) > 0
	basis in warrantless_bases
	basis in refused_bases
}

# --- Leads: two-person verification and actions (input.kind) --------------------------------
#
# A match is a lead until the number of distinct, trained reviewers data/leads.yaml
# requires have confirmed it (EU AI Act Art. 14(5): two); one rejection rejects it. Actions
# other than those listed as needing no verification need a verified lead whose search,
# if it must be authorised afterwards, has been authorised.

lead_input if input.kind in {"lead_review", "lead_action"}

lead_decision := {
	"allow": count(lead_deny) == 0,
	"reasons": [r | some code in sort({d.code | some d in lead_deny}); some r in lead_deny; r.code == code],
	"obligations": {"flags": [], "lead_status": lead_status_after},
}

final_statuses := {"verified", "rejected", "void"}

# A jurisdiction may require fewer than two reviewers only by naming the act that allows it.
reviewers_required := data.config.leads.reviewers.required if {
	data.config.leads.reviewers.required >= 2
} else := data.config.leads.reviewers.required if {
	is_string(data.config.leads.reviewers.legal_act)
	trim_space(data.config.leads.reviewers.legal_act) != ""
} else := 2

earlier_confirmations := {r.reviewer | some r in input.lead.reviews; r.verdict == "confirmed"}

confirmations := earlier_confirmations | {input.principal.id} if {
	input.verdict == "confirmed"
} else := earlier_confirmations

lead_status_after := "rejected" if {
	input.kind == "lead_review"
	count(lead_deny) == 0
	input.verdict == "rejected"
} else := "verified" if {
	input.kind == "lead_review"
	count(lead_deny) == 0
	count(confirmations) >= reviewers_required
} else := input.lead.status

verdicts := {"confirmed", "rejected", "inconclusive"}

lead_deny contains reason("lead_other_agency", concat("", [
	input.principal.id, " is not of ", input.lead.agency, ", whose lead this is",
])) if {
	input.principal.agency != input.lead.agency
}

lead_deny contains reason("lead_final", concat("", [
	"lead ", input.lead.id, " is ", input.lead.status, " already: no further review",
])) if {
	input.kind == "lead_review"
	input.lead.status in final_statuses
}

lead_deny contains reason("reviewer_not_qualified", concat("", [
	input.principal.id, " does not hold the reviewer role",
])) if {
	input.kind == "lead_review"
	not data.config.roles.reviewer in input.principal.roles
}

lead_deny contains reason("reviewer_training_lapsed", concat("", [
	input.principal.id, " has no training on record valid today",
])) if {
	input.kind == "lead_review"
	data.config.leads.training.required
	not training_current
}

training_current if {
	is_string(input.trained_until)
	input.trained_until >= substring(input.now, 0, 10)
}

lead_deny contains reason("reviewer_is_searcher", concat("", [
	input.principal.id, " ran the search that produced lead ", input.lead.id,
	" and may not verify it",
])) if {
	input.kind == "lead_review"
	input.principal.id == input.lead.officer
}

lead_deny contains reason("reviewer_already_reviewed", concat("", [
	input.principal.id, " has reviewed lead ", input.lead.id, " already",
])) if {
	input.kind == "lead_review"
	some r in input.lead.reviews
	r.reviewer == input.principal.id
}

lead_deny contains reason("verdict_unknown", concat("", [
	"a verdict is one of ", concat(", ", sort(verdicts)),
])) if {
	input.kind == "lead_review"
	not input.verdict in verdicts
}

action_kinds := object.keys(data.config.prepared.action_kinds) if {
	data.config.prepared.action_kinds
} else := normal_set_now(["leads", "actions", "kinds"])

unverified_actions := object.keys(data.config.prepared.unverified_actions) if {
	data.config.prepared.unverified_actions
} else := normal_set_now(["leads", "actions", "without_verification"])

needs_verification if {
	input.kind == "lead_action"
	not input.action in unverified_actions
}

lead_deny contains reason("not_an_officer", concat("", [
	"only officers record actions on leads, and ", input.principal.id, " is not one",
])) if {
	input.kind == "lead_action"
	not data.config.roles.officer in input.principal.roles
}

lead_deny contains reason("action_kind_unknown", concat("", [
	"an action is one of ", concat(", ", sort(action_kinds)),
])) if {
	input.kind == "lead_action"
	not input.action in action_kinds
}

lead_deny contains reason("lead_void", concat("", [
	"lead ", input.lead.id, " is void: its search's authorisation was refused",
])) if {
	needs_verification
	input.lead.status == "void"
}

lead_deny contains reason("lead_not_verified", concat("", [
	"lead ", input.lead.id, " is ", input.lead.status, ", not verified by ", format_int(reviewers_required, 10),
	" reviewers: a match alone is no ground to act on",
])) if {
	needs_verification
	input.lead.status != "verified"
	input.lead.status != "void"
}

lead_deny contains reason("authorisation_pending", concat("", [
	"the ", input.lead.authorisation.basis, " search behind lead ", input.lead.id,
	" is not authorised yet",
])) if {
	needs_verification
	input.lead.authorisation.state == "pending"
	not authorisation_overdue
}

authorisation_overdue if {
	input.lead.authorisation.state == "pending"
	time.parse_rfc3339_ns(input.lead.authorisation.deadline) <= time.parse_rfc3339_ns(input.now)
}

lead_deny contains reason("authorisation_overdue", concat("", [
	"the ", input.lead.authorisation.basis, " search behind lead ", input.lead.id,
	" was not authorised by its deadline ", input.lead.authorisation.deadline,
])) if {
	needs_verification
	authorisation_overdue
}
