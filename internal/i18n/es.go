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
	"dash.title":             "prepcast · difusores",
	"dash.heading":           "Publicación del PREP a los difusores",
	"dash.latest":            "Último corte: %s (%s), hecho hace %s",
	"dash.no_cuts":           "Todavía no hay cortes.",
	"dash.next":              "Próximo ciclo: %s (en %s)",
	"dash.next_none":         "Sin ciclos programados (la ventana terminó).",
	"dash.counts":            "%s difusores: %s al día, %s enviando, %s reintentando, %s con falla, %s sobre el retraso máximo (%s)",
	"dash.updated":           "Actualizado a las %s",
	"dash.live":              "en vivo",
	"dash.offline":           "sin conexión con el publicador; reintentando…",
	"dash.noscript":          "Sin JavaScript esta página se recarga cada 15 segundos.",
	"dash.col.difusor":       "Difusor",
	"dash.col.state":         "Estado",
	"dash.col.acked":         "Corte confirmado",
	"dash.col.lag":           "Retraso",
	"dash.col.push":          "Envío en curso",
	"dash.col.served":        "Corte servido",
	"dash.col.error":         "Último error",
	"dash.col.chart":         "Retraso en la noche",
	"dash.state.ok":          "al día",
	"dash.state.pushing":     "enviando",
	"dash.state.retrying":    "reintentando",
	"dash.state.failing":     "con falla",
	"dash.state.interrupted": "interrumpido",
	"dash.state.behind":      "atrasado",
	"dash.state.never":       "nunca enviado",
	"dash.lag.none":          "al día",
	"dash.lag.cuts":          "%s cortes · %s",
	"dash.lag.cut":           "1 corte · %s",
	"dash.lag.over":          "sobre el máximo",
	"dash.acked.none":        "ninguno",
	"dash.push.none":         "—",
	"dash.push.progress":     "%s de %s · %s/s",
	"dash.served.none":       "—",
	"dash.error.none":        "—",
	"dash.chart.label":       "Retraso de %s de %s a %s; máximo permitido %s (línea punteada); ahora %s",
	"dash.chart.empty":       "sin historial",
	"dash.lang.other":        "English",
}
