package i18n

// es is the Spanish catalogue, the default. Keys are grouped by the page or
// report that shows them; en.go has the same keys in the same groups.
var es = map[string]string{
	// shared
	"lang.name": "Español",

	// public status page (prepcast report)

	// list of official difusores (prepcast list)
	"list.title":        "Difusores oficiales del PREP",
	"list.intro":        "Medios de comunicación e instituciones que publican los resultados del Programa de Resultados Electorales Preliminares (PREP) tal como los firma el instituto. Cada logotipo lleva al sitio de publicación del difusor.",
	"list.visit":        "Visitar el sitio de %s",
	"list.contact":      "Contacto",
	"list.last_passed":  "Verificado el %s",
	"list.never_passed": "Sin verificación aprobada",
	"list.count":        "%s difusores oficiales",
	"list.empty":        "Aún no hay difusores en la lista.",
	"list.generated":    "Lista generada el %s.",
	"list.passed_only":  "Solo se muestran los difusores cuya última verificación de infraestructura fue aprobada.",

	// onboarding report (prepcast check --report)
	"check.title":                   "Informe de verificación del difusor %s",
	"check.intro":                   "Medición de la infraestructura mínima que pide la convocatoria para difusores del PREP (sección 2), hecha por el instituto con prepcast check desde su equipo de publicación, con los mismos accesos que usará la noche de la elección.",
	"check.date":                    "Fecha",
	"check.difusor":                 "Difusor",
	"check.server":                  "Servidor SFTP/SSH",
	"check.root":                    "directorio",
	"check.site":                    "Sitio de publicación",
	"check.duration":                "Duración de la verificación",
	"check.summary.pass":            "El difusor cumple todos los requisitos medidos.",
	"check.summary.fail":            "El difusor no cumple %d requisito(s); vea los detalles al final.",
	"check.section.call":            "Requisitos de la convocatoria (sección 2)",
	"check.section.operation":       "Requisitos para la publicación con prepcast",
	"check.section.details":         "Detalles y cómo corregir",
	"check.col.call":                "Convocatoria",
	"check.col.requirement":         "Requisito",
	"check.col.measured":            "Medido",
	"check.col.threshold":           "Mínimo o esperado",
	"check.col.verdict":             "Resultado",
	"check.call_item":               "sección %s, inciso %s)",
	"check.verdict.PASS":            "CUMPLE",
	"check.verdict.WARN":            "ADVERTENCIA",
	"check.verdict.FAIL":            "NO CUMPLE",
	"check.value.not_measured":      "sin medir",
	"check.value.works":             "funciona",
	"check.value.fails":             "falla",
	"check.fix":                     "cómo corregirlo",
	"check.footer":                  "Generado el %s por prepcast check (documento %s). Los valores técnicos se muestran tal como se midieron.",
	"check.req.os":                  "Sistema operativo (Windows, Linux, FreeBSD, Unix)",
	"check.req.web_server":          "Servidor web (Apache, nginx, IIS…)",
	"check.req.free_disk":           "20 GB libres en disco",
	"check.req.upload_rate":         "40 MB/seg mínimo en el servicio de sftp o ssh",
	"check.req.cache_control":       "Regla Cache-Control en json/main.json (no-cache, no-store, must-revalidate)",
	"check.req.ssh_reach":           "Servidor SSH accesible",
	"check.req.ssh_host_key":        "Llave del servidor SSH igual a la registrada",
	"check.req.ssh_auth":            "Autenticación SSH con la llave del instituto",
	"check.req.sftp_extensions":     "Extensiones SFTP que usa prepcast",
	"check.req.sftp_sessions":       "Sesiones SFTP por conexión",
	"check.req.push_mode":           "Modo de envío que usará prepcast",
	"check.req.retained_cuts":       "Espacio para los cortes retenidos de la noche",
	"check.req.write_rename_delete": "Escritura, renombrado y borrado en el directorio publicado",
	"check.req.file_modes":          "Permisos: el servidor web lee los archivos escritos por SFTP",
	"check.req.https_cert":          "Certificado HTTPS vigente durante toda la publicación",
	"check.req.clock_skew":          "Diferencia del reloj del difusor",

	// public verification (prepcast verify)

	// operations dashboard (prepcast run, /)
}
