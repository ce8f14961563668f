package i18n

// es is the Spanish catalogue, the default. Keys are grouped by the page or
// report that shows them; en.go has the same keys in the same groups.
var es = map[string]string{
	// shared
	"lang.name": "Español",

	// public status page (prepcast report)

	// list of official difusores (prepcast list)

	// onboarding report (prepcast check --report)

	// public verification (prepcast verify)

	// operations dashboard (prepcast run, /)
}
