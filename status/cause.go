package status

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/prepcast/prepcast/internal/termsafe"
)

// pushContext and sftpContext match the parts of an error message that only
// repeat what a table row already shows: the push, its cut and its target.
var (
	pushContext = regexp.MustCompile(`^push cut \d+ \([^)]*\) to [^:\s]+: `)
	sftpContext = regexp.MustCompile(`(^|: )sftp [^:\s]+: `)
)

// Cause returns the cause of an error message as a table shows it: the
// first line of the message, from its start (never cut from the left, so
// "connect …: HOST KEY CHANGED for …" stays readable), without the leading
// "push cut N (ID) to T: sftp T: " the row already gives, escaped for a
// terminal with termsafe.Line (and so bounded to termsafe.MaxLen runes).
func Cause(msg string) string {
	line := strings.TrimSpace(msg)
	more := ""
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line, more = strings.TrimSpace(line[:i]), " …"
	}
	line = sftpContext.ReplaceAllString(pushContext.ReplaceAllString(line, ""), "$1")
	return termsafe.Line(line) + more
}

// Clipped reports whether [Cause] leaves out part of msg other than the
// context it drops: more lines, or the end of a very long first line.
func Clipped(msg string) bool {
	msg = strings.TrimSpace(msg)
	return strings.ContainsAny(msg, "\r\n") || len(msg) > termsafe.MaxLen || strings.HasSuffix(msg, "…")
}

// maxErrorLines bounds the lines of one error written by [WriteErrors].
const maxErrorLines = 20

// WriteErrors writes the whole text of each error below a table: a line
// "name:" then the message's lines, indented and escaped. errs maps names,
// in the order given, to messages; empty messages are skipped.
func WriteErrors(w io.Writer, names []string, errs map[string]string) {
	first := true
	for _, name := range names {
		msg := strings.TrimSpace(errs[name])
		if msg == "" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nerrors in full:")
			first = false
		}
		fmt.Fprintf(w, "%s:\n", termsafe.String(name))
		lines := strings.Split(strings.ReplaceAll(msg, "\r\n", "\n"), "\n")
		for i, l := range lines {
			if i == maxErrorLines {
				fmt.Fprintf(w, "    … %d more lines\n", len(lines)-i)
				break
			}
			fmt.Fprintf(w, "    %s\n", termsafe.Clip(l, 4*termsafe.MaxLen))
		}
	}
}
