package i18n

// en is the English catalogue. Keys are grouped by the page or report that
// shows them; es.go has the same keys in the same groups.
var en = map[string]string{
	// shared
	"lang.name": "English",

	// public status page (prepcast report)
	"report.title":              "PREP difusores status",
	"report.intro":              "Each difusor publishes a copy of the PREP site. This page shows, for each one, which cut it serves to its readers and whether the files it serves are exactly those the institute signed.",
	"report.generated":          "Updated %s.",
	"report.latest":             "Latest published cut: %s (%s), made %s.",
	"report.nocut":              "No cut has been published yet.",
	"report.key":                "Fingerprint of the institute's public key: %s",
	"report.key.how":            "Compare this fingerprint with the one the institute publishes on its own site. With that key anyone can verify a difusor: prepcast verify URL --public-key key.pub",
	"report.col.difusor":        "Difusor",
	"report.col.served":         "Served cut",
	"report.col.lag":            "Lag",
	"report.col.result":         "Result",
	"report.col.checked":        "Last verification",
	"report.col.history":        "History",
	"report.result.ok":          "Serves exactly the signed cut",
	"report.result.behind":      "Serves an earlier signed cut",
	"report.result.differs":     "What it serves does not match the signed cut",
	"report.result.unreachable": "No answer",
	"report.result.unchecked":   "Not verified yet",
	"report.lag.none":           "up to date",
	"report.lag.cuts":           "%s cuts, %s",
	"report.lag.cut":            "1 cut, %s",
	"report.files":              "%s files checked",
	"report.mismatches":         "%s files differ",
	"report.httperrors":         "%s HTTP errors",
	"report.none":               "—",
	"report.history.caption":    "Result of each verification since %s: green, the latest signed cut; yellow, an earlier signed cut; red, does not match; grey, no answer.",
	"report.legend.ok":          "latest cut",
	"report.legend.behind":      "earlier cut",
	"report.legend.differs":     "does not match",
	"report.legend.unreachable": "no answer",
	"report.method":             "How it is verified: json/main.json is downloaded from each site as a reader would, the signed manifest of that cut is found in /.well-known/prepcast/, and the SHA-256 fingerprints of the served files are compared with the signed ones. Each cycle checks a different part of the files, so that all of them are checked within the day.",
	"report.json":               "The same data as JSON: status.json",

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
