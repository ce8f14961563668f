package i18n

// en is the English catalogue. Keys are grouped by the page or report that
// shows them; es.go has the same keys in the same groups.
var en = map[string]string{
	// shared
	"lang.name": "English",

	// public status page (prepcast report)

	// list of official difusores (prepcast list)
	"list.title":        "Official PREP difusores",
	"list.intro":        "Media and institutions that publish the results of the Preliminary Election Results Program (PREP) exactly as the institute signs them. Each logo links to the difusor's publication site.",
	"list.visit":        "Visit the site of %s",
	"list.contact":      "Contact",
	"list.last_passed":  "Checked on %s",
	"list.never_passed": "No passed check",
	"list.count":        "%s official difusores",
	"list.empty":        "There are no difusores in the list yet.",
	"list.generated":    "List generated on %s.",
	"list.passed_only":  "Only difusores whose latest infrastructure check passed are shown.",

	// onboarding report (prepcast check --report)
	"check.title":                   "Difusor check report: %s",
	"check.intro":                   "Measurement of the minimum infrastructure the call for PREP difusores requires (section 2), made by the institute with prepcast check from its publishing host, with the same access it will use on election night.",
	"check.date":                    "Date",
	"check.difusor":                 "Difusor",
	"check.server":                  "SFTP/SSH server",
	"check.root":                    "directory",
	"check.site":                    "Publication site",
	"check.duration":                "Check took",
	"check.summary.pass":            "The difusor meets every requirement measured.",
	"check.summary.fail":            "The difusor fails %d requirement(s); see the details at the end.",
	"check.section.call":            "Requirements of the call (section 2)",
	"check.section.operation":       "Requirements for publishing with prepcast",
	"check.section.details":         "Details and how to fix them",
	"check.col.call":                "Call",
	"check.col.requirement":         "Requirement",
	"check.col.measured":            "Measured",
	"check.col.threshold":           "Minimum or expected",
	"check.col.verdict":             "Result",
	"check.call_item":               "section %s, item %s)",
	"check.verdict.PASS":            "PASS",
	"check.verdict.WARN":            "WARNING",
	"check.verdict.FAIL":            "FAIL",
	"check.value.not_measured":      "not measured",
	"check.value.works":             "works",
	"check.value.fails":             "fails",
	"check.fix":                     "how to fix it",
	"check.footer":                  "Generated on %s by prepcast check (document %s). Technical values are shown as measured.",
	"check.req.os":                  "Operating system (Windows, Linux, FreeBSD, Unix)",
	"check.req.web_server":          "Web server (Apache, nginx, IIS…)",
	"check.req.free_disk":           "20 GB of free disk",
	"check.req.upload_rate":         "At least 40 MB/s over the SFTP or SSH service",
	"check.req.cache_control":       "Cache-Control rule on json/main.json (no-cache, no-store, must-revalidate)",
	"check.req.ssh_reach":           "SSH server reachable",
	"check.req.ssh_host_key":        "SSH host key matches the pinned one",
	"check.req.ssh_auth":            "SSH authentication with the institute's key",
	"check.req.sftp_extensions":     "SFTP extensions prepcast uses",
	"check.req.sftp_sessions":       "SFTP sessions per connection",
	"check.req.push_mode":           "Push mode prepcast will use",
	"check.req.retained_cuts":       "Room for the night's retained cuts",
	"check.req.write_rename_delete": "Write, rename and delete in the published directory",
	"check.req.file_modes":          "File modes: the web server reads files written over SFTP",
	"check.req.https_cert":          "HTTPS certificate valid through the whole publication",
	"check.req.clock_skew":          "Difusor's clock skew",

	// public verification (prepcast verify)

	// operations dashboard (prepcast run, /)
}
