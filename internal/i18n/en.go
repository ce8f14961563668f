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
}
