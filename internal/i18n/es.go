package i18n

// es is the Spanish catalogue, the default. Keys are grouped by the page or
// report that shows them; en.go has the same keys in the same groups.
var es = map[string]string{
	// shared
	"lang.name": "Español",

	// public status page (prepcast report)
	"report.title":              "Estado de los difusores del PREP",
	"report.intro":              "Cada difusor publica una copia del sitio del PREP. Esta página muestra, para cada uno, qué corte sirve a sus lectores y si los archivos que sirve son exactamente los que firmó el instituto.",
	"report.generated":          "Actualizado el %s.",
	"report.latest":             "Último corte publicado: %s (%s), hecho el %s.",
	"report.nocut":              "Todavía no hay cortes publicados.",
	"report.key":                "Huella de la clave pública del instituto: %s",
	"report.key.how":            "Compare esta huella con la que el instituto publica en su propio sitio. Con esa clave cualquiera puede verificar un difusor: prepcast verify URL --public-key clave.pub",
	"report.col.difusor":        "Difusor",
	"report.col.served":         "Corte servido",
	"report.col.lag":            "Retraso",
	"report.col.result":         "Resultado",
	"report.col.checked":        "Última verificación",
	"report.col.history":        "Historial",
	"report.result.ok":          "Sirve exactamente el corte firmado",
	"report.result.behind":      "Sirve un corte firmado anterior",
	"report.result.differs":     "Lo que sirve no coincide con el corte firmado",
	"report.result.unreachable": "Sin respuesta",
	"report.result.unchecked":   "Aún no verificado",
	"report.lag.none":           "al día",
	"report.lag.cuts":           "%s cortes, %s",
	"report.lag.cut":            "1 corte, %s",
	"report.files":              "%s archivos revisados",
	"report.mismatches":         "%s archivos difieren",
	"report.httperrors":         "%s errores HTTP",
	"report.none":               "—",
	"report.history.caption":    "Resultado de cada verificación desde %s: verde, el corte firmado más reciente; amarillo, un corte firmado anterior; rojo, no coincide; gris, sin respuesta.",
	"report.legend.ok":          "corte más reciente",
	"report.legend.behind":      "corte anterior",
	"report.legend.differs":     "no coincide",
	"report.legend.unreachable": "sin respuesta",
	"report.method":             "Cómo se verifica: se descarga json/main.json de cada sitio como lo haría un lector, se busca el manifiesto firmado de ese corte en /.well-known/prepcast/ y se comparan las huellas SHA-256 de los archivos servidos con las firmadas. En cada ciclo se revisa una parte distinta de los archivos, de modo que todos se revisan en el día.",
	"report.json":               "Los mismos datos en JSON: status.json",

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
