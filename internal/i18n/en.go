package i18n

// en is the English catalogue. Keys are grouped by the page or report that
// shows them; es.go has the same keys in the same groups.
var en = map[string]string{
	// shared
	"lang.name": "English",

	// public status page (prepcast report)

	// list of official difusores (prepcast list)

	// onboarding report (prepcast check --report)

	// public verification (prepcast verify)
	"verify.title":                      "Public verification of %s",
	"verify.key":                        "Institute key: %s",
	"verify.cut":                        "Served cut: %s (%s), signed %s, %s ago",
	"verify.checked.full":               "Files checked: %s of %s (all), %s bytes",
	"verify.checked.sample":             "Files checked: %s of %s (pointers, every CSV and JSON file and a random sample of the rest), %s bytes",
	"verify.attempts":                   "The site changed cut while it was verified; it was verified again (%d attempts).",
	"verify.ok":                         "RESULT: the site serves exactly the cut signed with this key.",
	"verify.fail":                       "RESULT: the site does NOT serve exactly a cut signed with this key.",
	"verify.mismatches":                 "Differences (%s):",
	"verify.kind.changed":               "changed",
	"verify.kind.missing":               "missing",
	"verify.kind.unreadable":            "not readable",
	"verify.http":                       "HTTP %d",
	"verify.problem.no_proof":           "The site does not publish the signed proof of its cuts (.well-known/prepcast/).",
	"verify.problem.bad_signature":      "Bad signature: the manifest the site publishes is not signed with this key.",
	"verify.problem.pointer_not_signed": "The pointer the site serves belongs to none of the signed cuts it publishes.",
	"verify.problem.pointer_unreadable": "The site does not serve the pointer.",
	"verify.detail":                     "Detail: %s",
	"verify.warn.cache_control_missing": "Warning: %s is served without a Cache-Control header; the rule is \"Cache-Control: %s\".",
	"verify.warn.cache_control_weak":    "Warning: %s is served with \"Cache-Control: %s\"; the rule is \"Cache-Control: %s\".",
	"verify.unreachable":                "The site could not be reached: %s",

	// operations dashboard (prepcast run, /)
}
