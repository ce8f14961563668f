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
	"verify.title":                      "Verificación pública de %s",
	"verify.key":                        "Clave del instituto: %s",
	"verify.cut":                        "Corte servido: %s (%s), firmado el %s, hace %s",
	"verify.checked.full":               "Archivos revisados: %s de %s (todos), %s bytes",
	"verify.checked.sample":             "Archivos revisados: %s de %s (apuntadores, todos los CSV y JSON y una muestra al azar de los demás), %s bytes",
	"verify.attempts":                   "El sitio cambió de corte mientras se verificaba; se verificó de nuevo (%d intentos).",
	"verify.ok":                         "RESULTADO: el sitio sirve exactamente el corte firmado con esta clave.",
	"verify.fail":                       "RESULTADO: el sitio NO sirve exactamente un corte firmado con esta clave.",
	"verify.mismatches":                 "Diferencias (%s):",
	"verify.kind.changed":               "modificado",
	"verify.kind.missing":               "falta",
	"verify.kind.unreadable":            "no legible",
	"verify.http":                       "HTTP %d",
	"verify.problem.no_proof":           "El sitio no publica la prueba firmada de sus cortes (.well-known/prepcast/).",
	"verify.problem.bad_signature":      "Firma inválida: el manifiesto que publica el sitio no está firmado con esta clave.",
	"verify.problem.pointer_not_signed": "El apuntador que sirve el sitio no corresponde a ningún corte firmado que publica.",
	"verify.problem.pointer_unreadable": "El sitio no sirve el apuntador.",
	"verify.detail":                     "Detalle: %s",
	"verify.warn.cache_control_missing": "Aviso: %s se sirve sin encabezado Cache-Control; la regla es «Cache-Control: %s».",
	"verify.warn.cache_control_weak":    "Aviso: %s se sirve con «Cache-Control: %s»; la regla es «Cache-Control: %s».",
	"verify.unreachable":                "No se pudo contactar el sitio: %s",

	// operations dashboard (prepcast run, /)
}
