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

	// operations dashboard (prepcast run, /)
	"dash.title":             "prepcast · difusores",
	"dash.heading":           "PREP publication to the difusores",
	"dash.latest":            "Latest cut: %s (%s), made %s ago",
	"dash.no_cuts":           "No cuts yet.",
	"dash.next":              "Next cycle: %s (in %s)",
	"dash.next_none":         "No cycle scheduled (the window is over).",
	"dash.counts":            "%s difusores: %s up to date, %s pushing, %s retrying, %s failing, %s over max lag (%s)",
	"dash.updated":           "Updated at %s",
	"dash.live":              "live",
	"dash.offline":           "no connection to the publisher; retrying…",
	"dash.noscript":          "Without JavaScript this page reloads every 15 seconds.",
	"dash.col.difusor":       "Difusor",
	"dash.col.state":         "State",
	"dash.col.acked":         "Acknowledged cut",
	"dash.col.lag":           "Lag",
	"dash.col.push":          "Push in progress",
	"dash.col.served":        "Served cut",
	"dash.col.error":         "Last error",
	"dash.col.chart":         "Lag over the night",
	"dash.state.ok":          "up to date",
	"dash.state.pushing":     "pushing",
	"dash.state.retrying":    "retrying",
	"dash.state.failing":     "failing",
	"dash.state.interrupted": "interrupted",
	"dash.state.behind":      "behind",
	"dash.state.never":       "never pushed",
	"dash.lag.none":          "up to date",
	"dash.lag.cuts":          "%s cuts · %s",
	"dash.lag.cut":           "1 cut · %s",
	"dash.lag.over":          "over max",
	"dash.acked.none":        "none",
	"dash.push.none":         "—",
	"dash.push.progress":     "%s of %s · %s/s",
	"dash.served.none":       "—",
	"dash.error.none":        "—",
	"dash.chart.label":       "Lag of %s from %s to %s; max allowed %s (dashed line); now %s",
	"dash.chart.empty":       "no history",
	"dash.lang.other":        "Español",
}
