package check

import (
	"regexp"
	"strings"

	"github.com/prepcast/prepcast/internal/i18n"
)

// The measured values and thresholds of rows are written in English for the
// operator (terminal, JSON). A report for the public translates the words
// prepcast itself wrote with the catalogue; numbers, names, headers and
// the difusor's own text stay as measured.

var fixedWords = map[string]string{
	"not measured":                 "check.value.not_measured",
	"works":                        "check.value.works",
	"fails":                        "check.value.fails",
	"unreachable":                  "check.value.unreachable",
	"matches the pinned key":       "check.value.key_matches",
	"does not match":               "check.value.key_differs",
	"refused":                      "check.value.refused",
	"invalid":                      "check.value.invalid",
	"none":                         "check.value.none",
	"(none)":                       "check.value.no_header",
	"HTTP 200, same bytes":         "check.value.same_bytes",
	"HTTP 200 with the same bytes": "check.threshold.same_bytes",
	"within ±30 s":                 "check.threshold.clock",
	"no fsync (the server cannot flush uploads to disk)":                                 "check.push.no_fsync",
	"fsync on the upload session (slower: the server allows one session per connection)": "check.push.fsync_one",
	"free space checked before staging":                                                  "check.push.statvfs",
	"no free-space check before staging":                                                 "check.push.no_statvfs",
}

var patternWords = []struct {
	re  *regexp.Regexp
	key string
}{
	{regexp.MustCompile(`^authenticated as (.*)$`), "check.value.authenticated_as"},
	{regexp.MustCompile(`^(\d+) or more$`), "check.value.or_more"},
	{regexp.MustCompile(`^(.*) free$`), "check.value.free"},
	{regexp.MustCompile(`^valid until (.*)$`), "check.value.valid_until"},
	{regexp.MustCompile(`^HTTP (\d+), other bytes$`), "check.value.other_bytes"},
	{regexp.MustCompile(`^\(no Server header\), HTTP (\d+)$`), "check.value.no_server"},
	{regexp.MustCompile(`^SSH banner from (.*)$`), "check.threshold.ssh_banner"},
	{regexp.MustCompile(`^write, rename, delete in (.*)$`), "check.threshold.write_in"},
	{regexp.MustCompile(`^(\d+) \(what prepcast uses\)$`), "check.threshold.sessions"},
	{regexp.MustCompile(`^sftp, (\d+) files in flight on one connection$`), "check.push.sftp"},
	{regexp.MustCompile(`^fsync through (\d+) extra sessions$`), "check.push.fsync_sessions"},
	{regexp.MustCompile(`^exec \(package mode\): one signed package per cut to "(.*)"; SFTP for probes$`), "check.push.exec"},
}

// say renders a value or threshold that prepcast wrote in English in l.
func say(l i18n.Lang, s string) string {
	if l == i18n.EN {
		return s
	}
	if k, ok := fixedWords[s]; ok {
		return l.T(k)
	}
	for _, p := range patternWords {
		if m := p.re.FindStringSubmatch(s); m != nil {
			return l.T(p.key, m[1])
		}
	}
	if parts := strings.Split(s, "; "); len(parts) > 1 {
		for i, p := range parts {
			parts[i] = say(l, p)
		}
		return strings.Join(parts, "; ")
	}
	return s
}
