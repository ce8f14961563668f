// Package termsafe makes text that came from elsewhere (a difusor's error
// message, a file name, a web page) safe to print on an operator's terminal
// or in a log line.
package termsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the default bound of [String]: longer text is cut with "…".
const MaxLen = 512

// String returns s bounded to MaxLen runes with every character that could
// move the cursor, change colours, reorder text or end a line escaped:
// control characters (C0, C1, DEL) as \xNN or \uNNNN, bidirectional and other
// format characters as \uNNNN, invalid UTF-8 as \xNN. Printable text,
// including Spanish letters, passes unchanged. The result never contains a
// byte below 0x20, so it cannot start an escape sequence or a new line.
func String(s string) string { return Clip(s, MaxLen) }

// Clip is [String] with a bound of n runes (n <= 0 means no bound).
func Clip(s string, n int) string {
	var b strings.Builder
	runes := 0
	for i := 0; i < len(s); {
		if n > 0 && runes >= n {
			b.WriteString("…")
			break
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i]), 16))
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			q := strconv.QuoteRune(r) // '\n', '\x1b', ...
			b.WriteString(q[1 : len(q)-1])
		case unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			b.WriteString(`\u`)
			h := strconv.FormatUint(uint64(r), 16)
			b.WriteString(strings.Repeat("0", 4-min(4, len(h))))
			b.WriteString(h)
		default:
			b.WriteRune(r)
		}
		i += size
		runes++
	}
	return b.String()
}

// Line is [String] for the first line of s only: what an operator's table
// shows as the cause of an error. Leading and trailing space is dropped.
func Line(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " …"
	}
	return String(s)
}
